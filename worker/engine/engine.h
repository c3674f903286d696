// Engine: one tensor-parallel rank's forward pass. Every rank gets the same
// StepBatch (a ragged mix of prefill chunks at any start position and single
// decode tokens, each with its own KV block table), computes its shard, and
// combines partial results through the Communicator: one all-reduce after the
// vocab-parallel embedding, after each attention output projection and after
// each FFN down projection; an all-gather of the LM-head logits (only the rows
// that are sampled) to rank 0, which samples.
//
// Input checks run identically on every rank before the first collective, so
// bad input (token id or position out of range, block table too short, bad
// sampling parameters, repeated seq_id) is an INVALID_ARGUMENT on all ranks,
// never a crash or a hang. A dead peer surfaces as the communicator's error.
//
// Rank 0 keeps each sequence's tokens (by position) for the repetition /
// presence / frequency penalties; a chunk at start_pos 0 restarts the
// sequence, and Free() forgets it.
//
//   TPS_ASSIGN_OR_RETURN(auto model, OpenModel(path));
//   TPS_ASSIGN_OR_RETURN(auto engine, Engine::Create(*model, *comm, EngineOptions{}));
//   StepBatch b;
//   b.seqs.push_back({.seq_id = 1, .tokens = ids, .start_pos = 0,
//                     .prompt_len = (int)ids.size(), .block_table = {0, 1}});
//   TPS_ASSIGN_OR_RETURN(StepOutput out, engine->Step(b));  // rank 0: one token
//
// The Engine names no hardware: the forward pass and the KV cache live behind
// ForwardBackend, chosen by EngineOptions::backend through
// CreateForwardBackend: "cpu" is CpuForward (kernels/cpu, host buffers, the
// host KvCachePool), "cuda" is CudaForward (worker/engine/cuda/), which keeps
// weights and KV cache on one device and needs an NCCL communicator when
// world_size > 1. Validation, the shard plan, weight slicing and penalty
// history stay here. Rank 0 samples on the host (sampler.h), or on the device
// when the backend can (ForwardBackend::ForwardSample, the CUDA backend's
// default) and no row asks for logprobs.
#ifndef TPSERVE_WORKER_ENGINE_ENGINE_H_
#define TPSERVE_WORKER_ENGINE_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "worker/comm/communicator.h"
#include "worker/engine/forward_backend.h"
#include "worker/engine/kv_cache_pool.h"
#include "worker/engine/shard_plan.h"
#include "worker/engine/shard_weights.h"
#include "worker/engine/step_types.h"
#include "worker/model/model_source.h"

namespace tpserve {

struct EngineOptions {
  int num_threads = 2;                          // compute threads of this rank
  int64_t kv_cache_bytes = int64_t{256} << 20;  // KV pool budget of the largest shard
  int block_size = 16;                          // tokens per KV block
  // KV cache element type: "auto" (= bf16), "f32" or "bf16", on either
  // backend; see ResolveKvDType in kv_cache_pool.h. bf16 halves the bytes
  // per token, so the same kv_cache_bytes holds twice the blocks; attention
  // still computes in f32.
  std::string kv_dtype = "auto";
  // Dequantize weight matrices to f32 at load: GEMMs then run in f32 instead
  // of quantizing activations to 8-bit blocks (the reference the CUDA engine
  // is compared against).
  bool f32_weights = false;
  // Tensor-parallel invariance: the row-parallel projections (attention
  // output, FFN down) sum per-chunk partials as 2^-32 fixed-point integers
  // and all-reduce them as int64 (kernels/ops.h GemmParams::y_fixed), so the
  // logits are bit-identical at every TP size (TP=1/2/3 tested on the default
  // model and generated GQA / Qwen2-bias / 8q2kv models:
  // //worker/engine:engine_tp_invariance_test). Off, those all-reduces sum
  // f32 partials in a TP-dependent order and logits differ in the last bits,
  // which the int8 activation rounding amplifies: greedy tokens at near-ties
  // can change with the TP size (docs/benchmarks.md, "TP invariance").
  bool tp_invariant = false;
  // Most tokens one step may carry (scratch memory grows with it); larger
  // batches are INVALID_ARGUMENT.
  int max_step_tokens = 65536;
  // "cpu" or "cuda"; anything else is INVALID_ARGUMENT. "cuda" without a
  // visible device is FAILED_PRECONDITION.
  std::string backend = "cpu";
  int device = 0;  // CUDA device of this rank (backend "cuda")
  // Backend "cuda": replay decode steps from CUDA graphs.
  bool cuda_graphs = true;
  // Backend "cuda": programmatic dependent launch of the decode-path kernels
  // (compute capability 9.0 and later; ignored below).
  bool cuda_pdl = true;
  // Backend "cuda": in decode steps each GEMM also prefetches the next
  // GEMM's weights into L2 (cp.async.bulk.prefetch, compute capability 9.0
  // and later; nothing below): at batch 1 on one rank the fused GEMVs, at
  // batches of 2-64 the tensor-core decode GEMM (Q8_0/Q4_0/Q4_1/BF16). A
  // hint: the same bits on and off under the emulator's tests
  // (cuda_engine_parity_test, prefetch_test). Off until a GPU run measures
  // it (decode_bench's "L2 prefetch" rows).
  bool cuda_l2_prefetch = false;
  // Backend "cuda": a batch-1 decode step on one rank runs its layers as one
  // cooperative kernel with a grid barrier between phases instead of 5
  // launches per layer (kernels/cuda/cuda_ops.h DecodeStepPersistent; Q8_0,
  // Q4_0 or Q4_1 weights, head_dim <= 128, not tp_invariant; other models
  // keep the per-kernel step). The per-kernel step's bits under the
  // emulator's tests (cuda_engine_parity_test). Off until a GPU run
  // measures it (decode_bench's "persistent" row).
  bool cuda_persistent_decode = false;
  // Backend "cuda": the kernel of the prefill GEMMs (more than 64 tokens,
  // on bf16 copies): "mma" (mma.sync, any device), "mma_dequant" (the same
  // kernel dequantising Q8_0/Q4_0/Q4_1 weights in its loader instead of
  // multiplying a bf16 copy of them made per call; the same bits), or on
  // sm_90 devices the experimental "wgmma" (cp.async loads) or "wgmma_tma"
  // (TMA loads, warp-specialised) kernels, which fall back to "mma"
  // elsewhere. Anything else is INVALID_ARGUMENT. "mma" until a GPU run
  // measures the others.
  std::string cuda_prefill_gemm = "mma";
  // Check at Create that every rank computed the same shard plan (one
  // collective). False when the communicator joins a group only later (the
  // worker re-joins a group at every epoch and calls CheckGroup then).
  bool check_group_at_create = true;
};

class Engine {
 public:
  // Builds the shard plan for comm's rank and world size, checks that every
  // rank computed the same plan (all-gather of its fingerprint), loads this
  // rank's weights and allocates the KV pool. `model` must outlive the engine.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Engine>> Create(const ModelSource& model,
                                                                      Communicator& comm,
                                                                      const EngineOptions& options);
  ~Engine();

  // One forward step; rank 0 returns a token per sequence with sample == true.
  [[nodiscard]] absl::StatusOr<StepOutput> Step(const StepBatch& batch);

  // Test hook: the same forward pass, returning on rank 0 the full-vocabulary
  // logits of every sequence's last token (batch order; `sample` ignored);
  // other ranks return an empty vector. Updates the KV cache like Step.
  [[nodiscard]] absl::StatusOr<std::vector<std::vector<float>>> ForwardLogits(
      const StepBatch& batch);

  // Forgets penalty history of finished sequences (rank 0).
  void Free(absl::Span<const uint64_t> seq_ids);

  // Collective: checks that every rank of the communicator's current group
  // computed the same shard plan. INVALID_ARGUMENT naming the ranks if not.
  [[nodiscard]] absl::Status CheckGroup();

  // Forgets every sequence (a new group epoch starts with an empty KV cache
  // in the router's block manager); weights and KV memory stay.
  void ResetSequences();

  const ModelConfig& config() const { return config_; }
  const ShardPlan& plan() const { return plan_; }
  int num_kv_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  // The KV cache's element type (EngineOptions::kv_dtype resolved).
  DType kv_dtype() const { return kv_dtype_; }
  // Bytes of this rank's KV cache (its own shard of the KV heads).
  int64_t kv_cache_bytes() const { return kv_cache_bytes_; }
  // "cpu" or "cuda".
  const std::string& backend() const { return backend_; }
  // One line naming the kernels the backend chose on this machine
  // (ForwardBackend::kernels), for the worker's start-up log.
  std::string kernels() const;
  int64_t weight_bytes() const { return weight_bytes_; }
  const StepTimings& last_timings() const { return timings_; }

 private:
  Engine(const ModelConfig& config, Communicator& comm, ShardPlan plan,
         std::unique_ptr<ForwardBackend> forward, int64_t weight_bytes, int num_blocks,
         const KvCacheShape& kv_shape, const EngineOptions& options);

  absl::Status Validate(const StepBatch& batch) const;
  void RecordTokens(const SequenceInput& seq);

  Communicator& comm_;
  const ModelConfig config_;
  ShardPlan plan_;
  // Runs the layers and the LM head (holds the weights and the KV cache).
  std::unique_ptr<ForwardBackend> forward_;
  const int64_t weight_bytes_;
  const int num_blocks_;
  const int block_size_;
  const DType kv_dtype_;
  const int64_t kv_cache_bytes_;
  const std::string backend_;
  const int max_step_tokens_;
  const bool tp_invariant_;
  StepTimings timings_;
  // Rank 0: tokens of each live sequence by position (-1 = never seen).
  std::unordered_map<uint64_t, std::vector<int32_t>> history_;
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_ENGINE_H_
