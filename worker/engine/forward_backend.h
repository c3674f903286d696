// ForwardBackend: the narrow interface between the Engine (validation, shard
// plan, weight slicing, batch bookkeeping, penalties, sampling) and the
// hardware that runs the model's forward pass with its own weights and KV
// cache. CpuForward (cpu_forward.h, kernels/cpu on host buffers) is the CPU
// twin of CudaForward (cuda/cuda_forward.h); CreateForwardBackend
// (forward_backend_factory.h) picks one by EngineOptions::backend, and the
// same engine tests run against both.
//
//   TPS_ASSIGN_OR_RETURN(std::unique_ptr<ForwardBackend> fb,
//                        CreateForwardBackend("cpu", config, plan, comm, {}));
//   TPS_RETURN_IF_ERROR(fb->Load(std::move(weights), kv_shape, num_blocks));
//   TPS_RETURN_IF_ERROR(fb->Forward(batch, head_rows, &logits, &timings));
#ifndef TPSERVE_WORKER_ENGINE_FORWARD_BACKEND_H_
#define TPSERVE_WORKER_ENGINE_FORWARD_BACKEND_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/engine/kv_cache_pool.h"
#include "worker/engine/shard_weights.h"
#include "worker/engine/step_types.h"

namespace tpserve {

// Wall time of the last step by phase, for metrics.
struct StepTimings {
  double total_s = 0;
  double comm_s = 0;    // time inside collectives (device backends: enqueue time)
  double sample_s = 0;  // rank 0 sampling
  int64_t tokens = 0;
  bool graph_replay = false;     // "cuda": the step was replayed from a CUDA graph
  bool device_sampling = false;  // rank 0 sampled on the device (ForwardSample)
};

// What the backends need beyond the model and the communicator.
struct ForwardBackendOptions {
  int num_threads = 2;  // "cpu": compute threads of this rank
  int device = 0;       // "cuda": device of this rank
  // "cuda": replay decode steps from CUDA graphs captured per
  // (batch-size bucket, context bucket); see cuda/cuda_forward.h.
  bool cuda_graphs = true;
  // "cuda": launch the decode-path kernels with programmatic dependent
  // launch on devices that have it (kernels/cuda/launch.cuh).
  bool cuda_pdl = true;
  // "cuda": decode GEMMs prefetch the next GEMM's weights into L2
  // (EngineOptions::cuda_l2_prefetch).
  bool cuda_l2_prefetch = false;
  // "cuda": batch-1 decode steps as one cooperative kernel
  // (EngineOptions::cuda_persistent_decode).
  bool cuda_persistent_decode = false;
  // "cuda": the kernel of the prefill GEMMs (EngineOptions::cuda_prefill_gemm).
  std::string cuda_prefill_gemm = "mma";
  // Row-parallel projections reduce in fixed point (kernels/ops.h
  // GemmParams::y_fixed) so logits do not depend on the tensor-parallel
  // size; see EngineOptions::tp_invariant.
  bool tp_invariant = false;
};

// What rank-0 sampling on the device needs besides the logits, per sampled
// row r: its parameters, its uniform draw (SampleUniform(seed, position)),
// and its distinct history tokens with their output counts
// (AppendDistinctHistory) at [history_begin[r], history_begin[r + 1]).
struct DeviceSampling {
  std::vector<SamplingParams> params;
  std::vector<double> uniforms;
  std::vector<int32_t> history_begin = {0};
  std::vector<int32_t> history_tokens;
  std::vector<int32_t> history_output_counts;
};

class ForwardBackend {
 public:
  virtual ~ForwardBackend() = default;

  // "cpu" or "cuda".
  virtual std::string name() const = 0;

  // One line naming the kernels this backend chose on this machine and why
  // an option asked for had no effect, for the worker's start-up log:
  // "CPU kernels: avxvnni + AVX-512, 2 threads".
  virtual std::string kernels() const = 0;

  // all[r] = rank r's `mine`, through buffers the backend's communicator
  // accepts (the Engine's shard-plan check).
  [[nodiscard]] virtual absl::Status AllGatherI64(int64_t mine, std::vector<int64_t>* all) = 0;

  // Takes this rank's weights (a device backend uploads and drops the host
  // copies) and allocates a zeroed KV cache of `num_blocks` blocks of `shape`
  // (kv_cache_pool.h's layout). Called once, before Forward.
  [[nodiscard]] virtual absl::Status Load(ShardWeights weights, const KvCacheShape& shape,
                                          int num_blocks) = 0;

  // Runs the layers over the (already validated) batch and the LM head on
  // rows `head_rows` of its flattened tokens; on rank 0 fills `logits`
  // (head_rows.size(), vocab) on the host. Adds to timings->comm_s.
  [[nodiscard]] virtual absl::Status Forward(const StepBatch& batch,
                                             const std::vector<int>& head_rows,
                                             std::vector<float>* logits, StepTimings* timings) = 0;

  // Whether ForwardSample is implemented (the CUDA backend).
  virtual bool samples_on_device() const { return false; }

  // Forward, then rank 0 samples every head row on the device (same algorithm
  // and results as worker/engine/sampler.h) and fills `tokens`
  // (head_rows.size()); the logits never leave the device. `sampling` is
  // read on rank 0 only.
  [[nodiscard]] virtual absl::Status ForwardSample(const StepBatch& batch,
                                                   const std::vector<int>& head_rows,
                                                   const DeviceSampling& sampling,
                                                   std::vector<int32_t>* tokens,
                                                   StepTimings* timings);
};

inline absl::Status ForwardBackend::ForwardSample(const StepBatch&, const std::vector<int>&,
                                                  const DeviceSampling&, std::vector<int32_t>*,
                                                  StepTimings*) {
  return absl::UnimplementedError("this backend does not sample on the device");
}

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_FORWARD_BACKEND_H_
