#include "worker/engine/shard_plan.h"

#include "absl/strings/str_cat.h"

namespace tpserve {
namespace {

// FNV-1a over 64-bit words.
void Mix(uint64_t& h, int64_t v) {
  for (int i = 0; i < 8; ++i) {
    h ^= static_cast<uint64_t>(v >> (8 * i)) & 0xff;
    h *= 1099511628211ull;
  }
}

}  // namespace

int64_t FfnSplitUnit(const ModelConfig& config) { return config.ffn_size % 32 == 0 ? 32 : 1; }

std::vector<IndexRange> SplitEvenly(int64_t n, int parts, int64_t unit) {
  const int64_t units = n / unit;
  std::vector<IndexRange> out(parts);
  int64_t begin = 0;
  for (int p = 0; p < parts; ++p) {
    int64_t c = units / parts + (p < units % parts ? 1 : 0);
    out[p] = {begin * unit, c * unit};
    begin += c;
  }
  return out;
}

absl::StatusOr<ShardPlan> ShardPlan::Create(const ModelConfig& c, int world_size, int rank) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " is outside a world of size ", world_size));
  }
  if (c.num_heads <= 0 || c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0 ||
      c.ffn_size <= 0 || c.vocab_size <= 0 || c.head_dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model shape cannot be sharded: ", c.num_heads, " query heads, ",
                     c.num_kv_heads, " KV heads, ffn ", c.ffn_size, ", vocab ", c.vocab_size));
  }
  if (world_size > c.num_heads) {
    return absl::InvalidArgumentError(absl::StrCat("world size ", world_size, " exceeds the ",
                                                   c.num_heads, " query heads of the model"));
  }
  const int64_t ffn_unit = FfnSplitUnit(c);
  if (world_size > c.ffn_size / ffn_unit || world_size > c.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("world size ", world_size, " exceeds the FFN or vocabulary split units"));
  }
  ShardPlan plan;
  plan.rank_ = rank;
  plan.shards_.resize(world_size);
  const int group = c.num_heads / c.num_kv_heads;
  if (world_size <= c.num_kv_heads) {
    std::vector<IndexRange> kv = SplitEvenly(c.num_kv_heads, world_size);
    for (int r = 0; r < world_size; ++r) {
      plan.shards_[r].kv_heads = kv[r];
      plan.shards_[r].q_heads = {kv[r].begin * group, kv[r].count * group};
    }
  } else {
    plan.kv_replicated_ = true;
    // Ranks per KV head, then the query group split among those ranks.
    std::vector<IndexRange> ranks_of_kv = SplitEvenly(world_size, c.num_kv_heads);
    for (int kv = 0; kv < c.num_kv_heads; ++kv) {
      std::vector<IndexRange> q = SplitEvenly(group, static_cast<int>(ranks_of_kv[kv].count));
      for (int i = 0; i < ranks_of_kv[kv].count; ++i) {
        RankShard& s = plan.shards_[ranks_of_kv[kv].begin + i];
        s.kv_heads = {kv, 1};
        s.q_heads = {int64_t{kv} * group + q[i].begin, q[i].count};
      }
    }
  }
  std::vector<IndexRange> ffn = SplitEvenly(c.ffn_size, world_size, ffn_unit);
  std::vector<IndexRange> vocab = SplitEvenly(c.vocab_size, world_size);
  for (int r = 0; r < world_size; ++r) {
    plan.shards_[r].ffn = ffn[r];
    plan.shards_[r].vocab = vocab[r];
  }
  uint64_t h = 1469598103934665603ull;
  for (int64_t v :
       {int64_t{c.hidden_size}, int64_t{c.num_layers}, int64_t{c.num_heads},
        int64_t{c.num_kv_heads}, int64_t{c.head_dim}, int64_t{c.ffn_size}, int64_t{c.vocab_size},
        int64_t{c.qkv_bias}, int64_t{c.tie_embeddings}, int64_t{c.rope_neox}}) {
    Mix(h, v);
  }
  plan.config_hash_ = h;
  return plan;
}

int64_t ShardPlan::max_vocab_rows() const {
  int64_t m = 0;
  for (const RankShard& s : shards_) m = std::max(m, s.vocab.count);
  return m;
}

uint64_t ShardPlan::Fingerprint() const {
  uint64_t h = config_hash_;
  Mix(h, world_size());
  for (const RankShard& s : shards_) {
    for (const IndexRange& r : {s.q_heads, s.kv_heads, s.ffn, s.vocab}) {
      Mix(h, r.begin);
      Mix(h, r.count);
    }
  }
  return h;
}

std::string ShardPlan::DebugString() const {
  std::string out;
  for (int r = 0; r < world_size(); ++r) {
    const RankShard& s = shards_[r];
    absl::StrAppend(&out, "rank ", r, ": q heads [", s.q_heads.begin, ",", s.q_heads.end(),
                    ") kv heads [", s.kv_heads.begin, ",", s.kv_heads.end(), ") ffn [", s.ffn.begin,
                    ",", s.ffn.end(), ") vocab [", s.vocab.begin, ",", s.vocab.end(), ")\n");
  }
  return out;
}

}  // namespace tpserve
