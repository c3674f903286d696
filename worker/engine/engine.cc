#include "worker/engine/engine.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status.h"
#include "kernels/cpu/cpu_ops.h"
#include "worker/engine/cuda/cuda_forward.h"
#include "worker/engine/sampler.h"

namespace tpserve {
namespace {

namespace cpu = kernels::cpu;

void Grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

kernels::RopeScalingType ToKernel(RopeScaling::Type t) {
  switch (t) {
    case RopeScaling::Type::kLinear:
      return kernels::RopeScalingType::kLinear;
    case RopeScaling::Type::kLlama3:
      return kernels::RopeScalingType::kLlama3;
    case RopeScaling::Type::kNone:
      break;
  }
  return kernels::RopeScalingType::kNone;
}

// y (m, out_features) = x (m, in_features) W^T (+ b), part by part.
absl::Status RunLinear(const Linear& l, const float* x, int m, float* y,
                       const kernels::Stream& stream) {
  for (const LinearPart& p : l.parts) {
    kernels::GemmParams g;
    g.x = x;
    g.w = p.weight.data;
    g.w_dtype = p.weight.dtype;
    g.bias = p.bias.empty() ? nullptr : p.bias.data();
    g.y = y + p.out_offset;
    g.m = m;
    g.n = static_cast<int>(p.weight.rows());
    g.k = l.in_features;
    g.y_stride = l.out_features;
    TPS_RETURN_IF_ERROR(cpu::Gemm(g, stream));
  }
  return absl::OkStatus();
}

double Seconds(absl::Time since) { return absl::ToDoubleSeconds(absl::Now() - since); }

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const ModelSource& model, Communicator& comm,
                                                       const EngineOptions& options) {
  if (options.num_threads < 1 || options.block_size < 1) {
    return absl::InvalidArgumentError("engine needs num_threads >= 1 and block_size >= 1");
  }
  if (options.backend != "cpu" && options.backend != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown engine backend '", options.backend, "'; use cpu or cuda"));
  }
  TPS_ASSIGN_OR_RETURN(ShardPlan plan,
                       ShardPlan::Create(model.config(), comm.world_size(), comm.rank()));
  std::unique_ptr<ForwardBackend> device;  // null: the CPU forward pass below
  if (options.backend == "cuda") {
    TPS_ASSIGN_OR_RETURN(device, CreateCudaForward(model.config(), plan, comm, options.device));
  }
  // Every rank must have computed the same plan (same model, same world).
  std::vector<int64_t> prints(comm.world_size());
  const int64_t mine = static_cast<int64_t>(plan.Fingerprint());
  if (device != nullptr) {
    TPS_RETURN_IF_ERROR(
        Annotate(device->AllGatherI64(mine, &prints), "exchanging shard plan fingerprints"));
  } else {
    TPS_RETURN_IF_ERROR(Annotate(comm.AllGather(&mine, prints.data(), 1, CommDType::kI64),
                                 "exchanging shard plan fingerprints"));
  }
  for (int r = 0; r < comm.world_size(); ++r) {
    if (prints[r] != prints[0]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shard plans disagree between ranks: rank 0 has ", prints[0], ", rank ", r, " has ",
          prints[r], " (different model files or world sizes?); this rank's plan:\n",
          plan.DebugString()));
    }
  }
  TPS_ASSIGN_OR_RETURN(ShardWeights weights, LoadShardWeights(model, plan, options.f32_weights));
  const ModelConfig& c = model.config();
  int64_t max_kv = 0;
  for (int r = 0; r < plan.world_size(); ++r)
    max_kv = std::max(max_kv, plan.shard(r).kv_heads.count);
  KvCacheShape shape{.num_layers = c.num_layers,
                     .n_kv_heads = static_cast<int>(max_kv),
                     .head_dim = c.head_dim,
                     .block_size = options.block_size};
  TPS_ASSIGN_OR_RETURN(int blocks, KvCachePool::BlocksForBudget(shape, options.kv_cache_bytes));
  shape.n_kv_heads = static_cast<int>(plan.mine().kv_heads.count);
  std::optional<KvCachePool> kv;
  if (device != nullptr) {
    TPS_RETURN_IF_ERROR(Annotate(device->Load(weights, shape, blocks),
                                 "loading weights and KV cache onto the CUDA device"));
    // The device holds its own copy; drop host copies (dequantised ones are
    // large), keeping the byte count for weight_bytes().
    const int64_t bytes = weights.bytes;
    weights = ShardWeights{};
    weights.bytes = bytes;
  } else {
    TPS_ASSIGN_OR_RETURN(kv, KvCachePool::Create(shape, blocks));
  }
  std::unique_ptr<Engine> engine(
      new Engine(model, comm, std::move(plan), std::move(weights), std::move(kv), blocks, options));
  engine->device_ = std::move(device);
  return engine;
}

Engine::Engine(const ModelSource& model, Communicator& comm, ShardPlan plan, ShardWeights weights,
               std::optional<KvCachePool> kv, int num_blocks, const EngineOptions& options)
    : model_(model),
      comm_(comm),
      config_(model.config()),
      plan_(std::move(plan)),
      weights_(std::move(weights)),
      kv_(std::move(kv)),
      num_blocks_(num_blocks),
      block_size_(options.block_size),
      backend_(options.backend),
      max_step_tokens_(options.max_step_tokens),
      pool_(options.num_threads) {}

Engine::~Engine() = default;

absl::Status Engine::Validate(const StepBatch& batch) const {
  std::unordered_set<uint64_t> ids;
  int64_t total = 0;
  for (const SequenceInput& s : batch.seqs) total += static_cast<int64_t>(s.tokens.size());
  if (total > max_step_tokens_) {
    return absl::InvalidArgumentError(
        absl::StrCat("step carries ", total, " tokens; the limit is ", max_step_tokens_));
  }
  for (size_t i = 0; i < batch.seqs.size(); ++i) {
    const SequenceInput& s = batch.seqs[i];
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s.seq_id, ": ", what));
    };
    if (!ids.insert(s.seq_id).second) return bad("appears twice in the batch");
    if (s.tokens.empty()) return bad("no tokens");
    if (s.start_pos < 0) return bad(absl::StrCat("start_pos ", s.start_pos, " < 0"));
    if (s.prompt_len < 0) return bad(absl::StrCat("prompt_len ", s.prompt_len, " < 0"));
    const int64_t end = int64_t{s.start_pos} + static_cast<int64_t>(s.tokens.size());
    if (config_.context_length > 0 && end > config_.context_length) {
      return bad(absl::StrCat("positions up to ", end - 1, " exceed the context length ",
                              config_.context_length));
    }
    for (int32_t t : s.tokens) {
      if (t < 0 || t >= config_.vocab_size) {
        return bad(
            absl::StrCat("token id ", t, " outside the vocabulary [0, ", config_.vocab_size, ")"));
      }
    }
    absl::Status st = KvCachePool::CheckBlockTable(num_blocks_, block_size_, s.block_table, end);
    if (!st.ok()) return Annotate(st, absl::StrCat("sequence ", s.seq_id));
    st = ValidateSamplingParams(s.sampling);
    if (!st.ok()) return Annotate(st, absl::StrCat("sequence ", s.seq_id));
  }
  return absl::OkStatus();
}

absl::Status Engine::AllReduce(std::vector<float>& buf, size_t count) {
  if (comm_.world_size() == 1) return absl::OkStatus();
  absl::Time t0 = absl::Now();
  absl::Status s = comm_.AllReduceSum(buf.data(), count, CommDType::kF32);
  timings_.comm_s += Seconds(t0);
  return s;
}

absl::Status Engine::Forward(const StepBatch& batch, const std::vector<int>& head_rows,
                             std::vector<float>* logits) {
  if (device_ != nullptr) return device_->Forward(batch, head_rows, logits, &timings_);
  KvCachePool& kv = *kv_;
  const ModelConfig& c = config_;
  const RankShard& me = plan_.mine();
  const int H = c.hidden_size;
  const int hd = c.head_dim;
  const int nq = static_cast<int>(me.q_heads.count);
  const int nkv = static_cast<int>(me.kv_heads.count);
  const int qdim = nq * hd;
  const int kvdim = nkv * hd;
  const int nqkv = qdim + 2 * kvdim;
  const int F = static_cast<int>(me.ffn.count);
  const int bs = kv.block_size();
  const kernels::Stream stream{.pool = &pool_};

  // Flatten the ragged batch: (T) tokens, positions and KV slots.
  const int S = static_cast<int>(batch.seqs.size());
  std::vector<int32_t> tokens, positions, cu_q(S + 1, 0), starts(S);
  std::vector<int64_t> slots;
  int max_blocks = 1;
  for (int i = 0; i < S; ++i) {
    const SequenceInput& s = batch.seqs[i];
    for (size_t j = 0; j < s.tokens.size(); ++j) {
      const int32_t pos = s.start_pos + static_cast<int32_t>(j);
      tokens.push_back(s.tokens[j]);
      positions.push_back(pos);
      slots.push_back(int64_t{s.block_table[pos / bs]} * bs + pos % bs);
    }
    cu_q[i + 1] = static_cast<int32_t>(tokens.size());
    starts[i] = s.start_pos;
    max_blocks =
        std::max(max_blocks, (s.start_pos + static_cast<int>(s.tokens.size()) + bs - 1) / bs);
  }
  std::vector<int32_t> tables(static_cast<size_t>(S) * max_blocks, 0);
  for (int i = 0; i < S; ++i) {
    const std::vector<int32_t>& bt = batch.seqs[i].block_table;
    std::copy_n(bt.begin(), std::min<size_t>(bt.size(), max_blocks),
                tables.begin() + i * max_blocks);
  }
  const int T = static_cast<int>(tokens.size());
  Grow(x_, size_t{1} * T * H);
  Grow(h_, size_t{1} * T * H);
  Grow(qkv_, size_t{1} * T * nqkv);
  Grow(attn_, size_t{1} * T * qdim);
  Grow(proj_, size_t{1} * T * H);
  Grow(gu_, size_t{1} * T * 2 * F);
  Grow(act_, size_t{1} * T * F);

  // (T, H) embedding: each rank fills the rows of its vocabulary slice.
  kernels::EmbeddingParams ep;
  ep.table = weights_.embedding.data;
  ep.dtype = weights_.embedding.dtype;
  ep.tokens = tokens.data();
  ep.out = x_.data();
  ep.num_tokens = T;
  ep.dim = H;
  ep.rows = static_cast<int>(me.vocab.count);
  ep.row_offset = static_cast<int>(me.vocab.begin);
  TPS_RETURN_IF_ERROR(cpu::Embedding(ep, stream));
  TPS_RETURN_IF_ERROR(AllReduce(x_, size_t{1} * T * H));

  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = weights_.layers[l];
    // Attention block.
    TPS_RETURN_IF_ERROR(cpu::RmsNorm({.x = x_.data(),
                                      .weight = w.attn_norm.data(),
                                      .y = h_.data(),
                                      .rows = T,
                                      .dim = H,
                                      .eps = c.rms_norm_eps},
                                     stream));
    TPS_RETURN_IF_ERROR(RunLinear(w.qkv, h_.data(), T, qkv_.data(), stream));  // (T, nqkv)
    float* q = qkv_.data();
    float* k = q + qdim;
    float* v = k + kvdim;
    kernels::RopeParams rp;
    rp.q = q;
    rp.k = k;
    rp.positions = positions.data();
    rp.tokens = T;
    rp.n_heads = nq;
    rp.n_kv_heads = nkv;
    rp.head_dim = hd;
    rp.q_stride = nqkv;
    rp.k_stride = nqkv;
    rp.theta = c.rope_theta;
    rp.neox = c.rope_neox;
    rp.scaling = ToKernel(c.rope_scaling.type);
    rp.factor = c.rope_scaling.factor;
    rp.low_freq_factor = c.rope_scaling.low_freq_factor;
    rp.high_freq_factor = c.rope_scaling.high_freq_factor;
    rp.original_max_position = c.rope_scaling.original_max_position;
    TPS_RETURN_IF_ERROR(cpu::Rope(rp, stream));
    kernels::KvCacheWriteParams kw;
    kw.k = k;
    kw.v = v;
    kw.k_cache = kv.k(l);
    kw.v_cache = kv.v(l);
    kw.slot_mapping = slots.data();
    kw.tokens = T;
    kw.n_kv_heads = nkv;
    kw.head_dim = hd;
    kw.block_size = bs;
    kw.num_blocks = kv.num_blocks();
    kw.k_stride = nqkv;
    kw.v_stride = nqkv;
    TPS_RETURN_IF_ERROR(cpu::KvCacheWrite(kw, stream));
    kernels::PagedAttentionParams ap;
    ap.q = q;
    ap.k_cache = kv.k(l);
    ap.v_cache = kv.v(l);
    ap.out = attn_.data();
    ap.block_tables = tables.data();
    ap.cu_q_lens = cu_q.data();
    ap.start_pos = starts.data();
    ap.num_seqs = S;
    ap.max_blocks_per_seq = max_blocks;
    ap.n_heads = nq;
    ap.n_kv_heads = nkv;
    ap.head_dim = hd;
    ap.block_size = bs;
    ap.num_blocks = kv.num_blocks();
    ap.q_stride = nqkv;
    ap.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    TPS_RETURN_IF_ERROR(cpu::PagedAttention(ap, stream));                        // (T, qdim)
    TPS_RETURN_IF_ERROR(RunLinear(w.o, attn_.data(), T, proj_.data(), stream));  // (T, H) partial
    TPS_RETURN_IF_ERROR(AllReduce(proj_, size_t{1} * T * H));
    TPS_RETURN_IF_ERROR(
        cpu::Add({.a = x_.data(), .b = proj_.data(), .y = x_.data(), .n = int64_t{T} * H}, stream));
    // FFN block.
    TPS_RETURN_IF_ERROR(cpu::RmsNorm({.x = x_.data(),
                                      .weight = w.ffn_norm.data(),
                                      .y = h_.data(),
                                      .rows = T,
                                      .dim = H,
                                      .eps = c.rms_norm_eps},
                                     stream));
    TPS_RETURN_IF_ERROR(RunLinear(w.gate_up, h_.data(), T, gu_.data(), stream));  // (T, 2F)
    TPS_RETURN_IF_ERROR(cpu::Swiglu({.gate = gu_.data(),
                                     .up = gu_.data() + F,
                                     .out = act_.data(),
                                     .rows = T,
                                     .dim = F,
                                     .gate_stride = 2 * F,
                                     .up_stride = 2 * F},
                                    stream));                                      // (T, F)
    TPS_RETURN_IF_ERROR(RunLinear(w.down, act_.data(), T, proj_.data(), stream));  // (T, H) partial
    TPS_RETURN_IF_ERROR(AllReduce(proj_, size_t{1} * T * H));
    TPS_RETURN_IF_ERROR(
        cpu::Add({.a = x_.data(), .b = proj_.data(), .y = x_.data(), .n = int64_t{T} * H}, stream));
  }

  // LM head on the rows that are sampled: (R, H) -> (R, vocab_local), padded
  // to the largest slice so the all-gather has equal counts.
  const int R = static_cast<int>(head_rows.size());
  if (R == 0) return absl::OkStatus();
  const int64_t maxv = plan_.max_vocab_rows();
  Grow(head_in_, size_t{1} * R * H);
  Grow(head_out_, static_cast<size_t>(R * maxv));
  for (int r = 0; r < R; ++r) {
    std::copy_n(x_.data() + size_t{1} * head_rows[r] * H, H, head_in_.data() + size_t{1} * r * H);
  }
  TPS_RETURN_IF_ERROR(cpu::RmsNorm({.x = head_in_.data(),
                                    .weight = weights_.output_norm.data(),
                                    .y = head_in_.data(),
                                    .rows = R,
                                    .dim = H,
                                    .eps = c.rms_norm_eps},
                                   stream));
  Linear head = weights_.lm_head;
  head.out_features = static_cast<int>(maxv);  // row stride of the padded output
  TPS_RETURN_IF_ERROR(RunLinear(head, head_in_.data(), R, head_out_.data(), stream));
  const float* all = head_out_.data();
  if (comm_.world_size() > 1) {
    Grow(gathered_, static_cast<size_t>(R * maxv * comm_.world_size()));
    absl::Time t0 = absl::Now();
    TPS_RETURN_IF_ERROR(
        comm_.AllGather(head_out_.data(), gathered_.data(), R * maxv, CommDType::kF32));
    timings_.comm_s += Seconds(t0);
    all = gathered_.data();
  }
  if (comm_.rank() != 0) return absl::OkStatus();
  logits->assign(static_cast<size_t>(R) * c.vocab_size, 0.0f);
  for (int rk = 0; rk < plan_.world_size(); ++rk) {
    const IndexRange& v = plan_.shard(rk).vocab;
    for (int r = 0; r < R; ++r) {
      std::copy_n(all + (rk * R + r) * maxv, v.count,
                  logits->data() + size_t{1} * r * c.vocab_size + v.begin);
    }
  }
  return absl::OkStatus();
}

void Engine::RecordTokens(const SequenceInput& s) {
  std::vector<int32_t>& h = history_[s.seq_id];
  h.resize(s.start_pos, -1);  // a restart at 0 (or a rewind) drops later tokens
  h.insert(h.end(), s.tokens.begin(), s.tokens.end());
}

absl::StatusOr<StepOutput> Engine::Step(const StepBatch& batch) {
  const absl::Time t0 = absl::Now();
  timings_ = {};
  TPS_RETURN_IF_ERROR(Validate(batch));
  StepOutput out;
  if (batch.seqs.empty()) return out;
  std::vector<int> head_rows;
  std::vector<int> sampled_seqs;
  int row = 0;
  for (int i = 0; i < static_cast<int>(batch.seqs.size()); ++i) {
    const SequenceInput& s = batch.seqs[i];
    row += static_cast<int>(s.tokens.size());
    timings_.tokens += static_cast<int64_t>(s.tokens.size());
    if (comm_.rank() == 0) RecordTokens(s);
    if (s.sample) {
      head_rows.push_back(row - 1);
      sampled_seqs.push_back(i);
    }
  }
  std::vector<float> logits;
  TPS_RETURN_IF_ERROR(Forward(batch, head_rows, &logits));
  if (comm_.rank() == 0) {
    const absl::Time ts = absl::Now();
    const int V = config_.vocab_size;
    for (size_t j = 0; j < sampled_seqs.size(); ++j) {
      const SequenceInput& s = batch.seqs[sampled_seqs[j]];
      const std::vector<int32_t>& h = history_[s.seq_id];
      const int64_t pos = int64_t{s.start_pos} + static_cast<int64_t>(s.tokens.size());
      const int64_t prompt_end = std::min<int64_t>(s.prompt_len, pos);
      TokenHistory th;
      for (int64_t p = 0; p < pos && p < static_cast<int64_t>(h.size()); ++p) {
        if (h[p] < 0) continue;
        (p < prompt_end ? th.prompt : th.output).push_back(h[p]);
      }
      TPS_ASSIGN_OR_RETURN(
          SampledToken t,
          SampleToken(absl::MakeConstSpan(logits.data() + j * V, V), s.sampling, th, pos));
      t.seq_id = s.seq_id;
      out.tokens.push_back(std::move(t));
    }
    timings_.sample_s = Seconds(ts);
  }
  timings_.total_s = Seconds(t0);
  return out;
}

absl::StatusOr<std::vector<std::vector<float>>> Engine::ForwardLogits(const StepBatch& batch) {
  timings_ = {};
  TPS_RETURN_IF_ERROR(Validate(batch));
  std::vector<std::vector<float>> out;
  if (batch.seqs.empty()) return out;
  std::vector<int> head_rows;
  int row = 0;
  for (const SequenceInput& s : batch.seqs) {
    row += static_cast<int>(s.tokens.size());
    head_rows.push_back(row - 1);
    if (comm_.rank() == 0) RecordTokens(s);
  }
  std::vector<float> logits;
  TPS_RETURN_IF_ERROR(Forward(batch, head_rows, &logits));
  if (comm_.rank() != 0) return out;
  const size_t V = config_.vocab_size;
  for (size_t i = 0; i < head_rows.size(); ++i) {
    out.emplace_back(logits.begin() + i * V, logits.begin() + (i + 1) * V);
  }
  return out;
}

void Engine::Free(absl::Span<const uint64_t> seq_ids) {
  for (uint64_t id : seq_ids) history_.erase(id);
}

}  // namespace tpserve
