#include "worker/engine/engine.h"

#include <algorithm>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/elapsed.h"
#include "common/status.h"
#include "worker/engine/forward_backend_factory.h"
#include "worker/engine/sampler.h"

namespace tpserve {
namespace {

// Every rank must have computed the same plan (same model, same world), use
// the same row-parallel reduction (tp_invariant all-reduces int64s) and the
// same KV cache dtype (which sets the block count the router sees).
absl::Status CheckPlanAcrossRanks(const ShardPlan& plan, ForwardBackend& forward, int world_size,
                                  bool tp_invariant, DType kv_dtype) {
  std::vector<int64_t> prints(world_size);
  const int64_t mine =
      static_cast<int64_t>(plan.Fingerprint() ^ (tp_invariant ? 0x9e3779b97f4a7c15ull : 0) ^
                           (kv_dtype == DType::kBF16 ? 0xc2b2ae3d27d4eb4full : 0));
  TPS_RETURN_IF_ERROR(
      Annotate(forward.AllGatherI64(mine, &prints), "exchanging shard plan fingerprints"));
  for (int r = 0; r < world_size; ++r) {
    if (prints[r] != prints[0]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shard plans disagree between ranks: rank 0 has ", prints[0], ", rank ", r, " has ",
          prints[r],
          " (different model files, world sizes, tp_invariant or kv_dtype settings?); this "
          "rank's plan:\n",
          plan.DebugString()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Engine::CheckGroup() {
  return CheckPlanAcrossRanks(plan_, *forward_, comm_.world_size(), tp_invariant_, kv_dtype_);
}

void Engine::ResetSequences() { history_.clear(); }

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const ModelSource& model, Communicator& comm,
                                                       const EngineOptions& options) {
  if (options.num_threads < 1 || options.block_size < 1) {
    return absl::InvalidArgumentError("engine needs num_threads >= 1 and block_size >= 1");
  }
  TPS_RETURN_IF_ERROR(CheckForwardBackendName(options.backend));
  TPS_ASSIGN_OR_RETURN(const DType kv_dtype, ResolveKvDType(options.kv_dtype));
  TPS_ASSIGN_OR_RETURN(ShardPlan plan,
                       ShardPlan::Create(model.config(), comm.world_size(), comm.rank()));
  TPS_ASSIGN_OR_RETURN(
      std::unique_ptr<ForwardBackend> forward,
      CreateForwardBackend(options.backend, model.config(), plan, comm,
                           {.num_threads = options.num_threads,
                            .device = options.device,
                            .cuda_graphs = options.cuda_graphs,
                            .cuda_pdl = options.cuda_pdl,
                            .cuda_l2_prefetch = options.cuda_l2_prefetch,
                            .cuda_persistent_decode = options.cuda_persistent_decode,
                            .cuda_prefill_gemm = options.cuda_prefill_gemm,
                            .tp_invariant = options.tp_invariant}));
  if (options.check_group_at_create) {
    TPS_RETURN_IF_ERROR(
        CheckPlanAcrossRanks(plan, *forward, comm.world_size(), options.tp_invariant, kv_dtype));
  }
  TPS_ASSIGN_OR_RETURN(ShardWeights weights, LoadShardWeights(model, plan, options.f32_weights));
  const ModelConfig& c = model.config();
  int64_t max_kv = 0;
  for (int r = 0; r < plan.world_size(); ++r)
    max_kv = std::max(max_kv, plan.shard(r).kv_heads.count);
  KvCacheShape shape{.num_layers = c.num_layers,
                     .n_kv_heads = static_cast<int>(max_kv),
                     .head_dim = c.head_dim,
                     .block_size = options.block_size,
                     .dtype = kv_dtype};
  TPS_ASSIGN_OR_RETURN(int blocks, KvCachePool::BlocksForBudget(shape, options.kv_cache_bytes));
  shape.n_kv_heads = static_cast<int>(plan.mine().kv_heads.count);
  const int64_t weight_bytes = weights.bytes;
  TPS_RETURN_IF_ERROR(
      Annotate(forward->Load(std::move(weights), shape, blocks),
               absl::StrCat("loading weights and KV cache for backend ", forward->name())));
  return std::unique_ptr<Engine>(new Engine(model.config(), comm, std::move(plan),
                                            std::move(forward), weight_bytes, blocks, shape,
                                            options));
}

Engine::Engine(const ModelConfig& config, Communicator& comm, ShardPlan plan,
               std::unique_ptr<ForwardBackend> forward, int64_t weight_bytes, int num_blocks,
               const KvCacheShape& kv_shape, const EngineOptions& options)
    : comm_(comm),
      config_(config),
      plan_(std::move(plan)),
      forward_(std::move(forward)),
      weight_bytes_(weight_bytes),
      num_blocks_(num_blocks),
      block_size_(options.block_size),
      kv_dtype_(kv_shape.dtype),
      kv_cache_bytes_(int64_t{num_blocks} * KvCachePool::BlockBytes(kv_shape)),
      backend_(options.backend),
      max_step_tokens_(options.max_step_tokens),
      tp_invariant_(options.tp_invariant) {}

Engine::~Engine() = default;

std::string Engine::kernels() const { return forward_->kernels(); }

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
  // The position a sequence's sampled token takes, and its token history.
  auto position = [](const SequenceInput& s) {
    return int64_t{s.start_pos} + static_cast<int64_t>(s.tokens.size());
  };
  // Only penalties read it: the per-token cost is skipped for other rows.
  auto history = [&](const SequenceInput& s) {
    TokenHistory th;
    if (!UsesHistory(s.sampling)) return th;
    const std::vector<int32_t>& h = history_[s.seq_id];
    const int64_t pos = position(s);
    const int64_t prompt_end = std::min<int64_t>(s.prompt_len, pos);
    for (int64_t p = 0; p < pos && p < static_cast<int64_t>(h.size()); ++p) {
      if (h[p] < 0) continue;
      (p < prompt_end ? th.prompt : th.output).push_back(h[p]);
    }
    return th;
  };
  // The device samples unless a row wants logprobs (computed on the host).
  // Every rank takes the same branch: it depends on the batch only.
  bool on_device = forward_->samples_on_device();
  for (int i : sampled_seqs) {
    const SamplingParams& p = batch.seqs[i].sampling;
    on_device = on_device && !p.logprobs && p.top_logprobs == 0;
  }
  if (on_device) {
    const absl::Time ts = absl::Now();
    DeviceSampling ds;
    if (comm_.rank() == 0) {
      for (int i : sampled_seqs) {
        const SequenceInput& s = batch.seqs[i];
        ds.params.push_back(s.sampling);
        ds.uniforms.push_back(SampleUniform(s.sampling.seed, position(s)));
        AppendDistinctHistory(history(s), &ds.history_tokens, &ds.history_output_counts);
        ds.history_begin.push_back(static_cast<int32_t>(ds.history_tokens.size()));
      }
    }
    timings_.sample_s = SecondsSince(ts);
    std::vector<int32_t> tokens;
    TPS_RETURN_IF_ERROR(forward_->ForwardSample(batch, head_rows, ds, &tokens, &timings_));
    timings_.device_sampling = true;
    if (comm_.rank() == 0) {
      for (size_t j = 0; j < sampled_seqs.size(); ++j) {
        SampledToken t;
        t.seq_id = batch.seqs[sampled_seqs[j]].seq_id;
        t.token = tokens[j];
        out.tokens.push_back(std::move(t));
      }
    }
    timings_.total_s = SecondsSince(t0);
    return out;
  }
  std::vector<float> logits;
  TPS_RETURN_IF_ERROR(forward_->Forward(batch, head_rows, &logits, &timings_));
  if (comm_.rank() == 0) {
    const absl::Time ts = absl::Now();
    const int V = config_.vocab_size;
    for (size_t j = 0; j < sampled_seqs.size(); ++j) {
      const SequenceInput& s = batch.seqs[sampled_seqs[j]];
      TPS_ASSIGN_OR_RETURN(SampledToken t,
                           SampleToken(absl::MakeConstSpan(logits.data() + j * V, V), s.sampling,
                                       history(s), position(s)));
      t.seq_id = s.seq_id;
      out.tokens.push_back(std::move(t));
    }
    timings_.sample_s = SecondsSince(ts);
  }
  timings_.total_s = SecondsSince(t0);
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
  TPS_RETURN_IF_ERROR(forward_->Forward(batch, head_rows, &logits, &timings_));
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
