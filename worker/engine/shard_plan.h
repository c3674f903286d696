// ShardPlan: which part of the model a tensor-parallel rank owns (Megatron
// layout): query/KV heads and FFN columns (column-parallel QKV and gate/up,
// row-parallel O and down), and vocabulary rows (vocab-parallel embedding and
// LM head).
//
// Head counts that the world size does not divide (the default model has 9
// query and 3 KV heads and runs at TP=1, 2 and 3):
//   * world <= num_kv_heads: KV heads are split into contiguous, possibly
//     uneven runs, and each rank takes the whole query groups of its KV heads
//     (9q/3kv at TP=2: rank 0 = KV 0-1 + Q 0-5, rank 1 = KV 2 + Q 6-8). No
//     weight is duplicated; ranks differ in work by at most one KV group.
//   * world > num_kv_heads: KV heads are replicated. Ranks are dealt to KV
//     heads as evenly as possible; the ranks sharing one KV head split its
//     query group (8q/2kv at TP=3: ranks 0,1 hold KV 0 with Q 0-1 / 2-3,
//     rank 2 holds KV 1 with Q 4-7). Every rank holds exactly one KV head, so
//     the local GQA mapping stays "query head h reads KV head h / group".
// Every query head lives on exactly one rank, so the row-parallel O
// projection's partial sums add up to the full output. world > num_heads is
// rejected (a rank would own no head).
// FFN columns are split in units of 32 (one quantization block) when ffn_size
// allows, so row-parallel down-projection slices of quantized weights stay
// block-aligned; vocabulary rows are split evenly (first ranks take one more).
//
//   TPS_ASSIGN_OR_RETURN(ShardPlan plan, ShardPlan::Create(config, 2, rank));
//   int q_rows = plan.mine().q_heads.count * config.head_dim;
#ifndef TPSERVE_WORKER_ENGINE_SHARD_PLAN_H_
#define TPSERVE_WORKER_ENGINE_SHARD_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/model_config.h"

namespace tpserve {

// Half-open range [begin, begin + count).
struct IndexRange {
  int64_t begin = 0;
  int64_t count = 0;
  int64_t end() const { return begin + count; }
  bool operator==(const IndexRange&) const = default;
};

struct RankShard {
  IndexRange q_heads;   // query heads (attn_q rows / head_dim, attn_output cols / head_dim)
  IndexRange kv_heads;  // KV heads (attn_k / attn_v rows / head_dim)
  IndexRange ffn;       // FFN columns (gate/up rows, down cols)
  IndexRange vocab;     // vocabulary rows (embedding and LM head)
};

class ShardPlan {
 public:
  // Validates world size and rank (INVALID_ARGUMENT otherwise) and the config.
  [[nodiscard]] static absl::StatusOr<ShardPlan> Create(const ModelConfig& config, int world_size,
                                                        int rank);

  int world_size() const { return static_cast<int>(shards_.size()); }
  int rank() const { return rank_; }
  const RankShard& mine() const { return shards_[rank_]; }
  const RankShard& shard(int r) const { return shards_[r]; }
  // True when several ranks hold the same KV heads.
  bool kv_replicated() const { return kv_replicated_; }
  // Largest vocabulary slice over ranks (the all-gather's per-rank count).
  int64_t max_vocab_rows() const;
  // A hash of the model shape and every rank's shard, equal on every rank that
  // computed the same plan; ranks compare it (all-gather) before serving.
  uint64_t Fingerprint() const;
  // One line per rank, for logs and errors.
  std::string DebugString() const;

 private:
  ShardPlan() = default;

  int rank_ = 0;
  bool kv_replicated_ = false;
  uint64_t config_hash_ = 0;
  std::vector<RankShard> shards_;
};

// The unit FFN columns are split in: 32 (one quantization block) when
// ffn_size allows, else 1.
int64_t FfnSplitUnit(const ModelConfig& config);

// Splits [0, n) into `parts` contiguous ranges in units of `unit` (n must be
// a multiple of unit); earlier parts take the remainder units.
std::vector<IndexRange> SplitEvenly(int64_t n, int parts, int64_t unit = 1);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_SHARD_PLAN_H_
