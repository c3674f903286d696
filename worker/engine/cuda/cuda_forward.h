// CudaForward: the Engine's CUDA backend (EngineOptions::backend = "cuda").
// One tensor-parallel rank's forward pass on one device with the launchers of
// kernels/cuda/cuda_ops.h: weights uploaded once from the rank's ShardWeights
// (device_weights.h), a paged KV cache in device memory, activations in
// grown-on-demand device scratch, and the Engine's collectives (all-reduce
// after the embedding and after each row-parallel projection, all-gather of
// the LM-head rows) on device buffers through the communicator, which must be
// NCCL when the world has more than one rank. Everything runs on one stream
// and each step ends with one synchronisation. Rank 0 samples on the device
// (ForwardSample with device_sampler.h, the Engine's default) or copies the
// gathered logits to the host (Forward) when the Engine samples there (for
// logprobs).
//
// Decode steps are replayed from CUDA graphs (when `cuda_graphs`;
// graph_cache.h has the bucketing). A SmolLM2 decode step calls 7 launchers
// in each of its 30 layers, each a few microseconds of host launch overhead,
// so launch overhead, not the kernels, bounds batch-1 decode without graphs.
// In a multi-rank group the graphs hold the step's NCCL collectives too
// (NCCL supports capture; one device per process, thread-local capture
// mode). NCCL requires every rank to capture and launch its graphs at the
// same steps: each rank decides from the same StepBatch and the same
// regrowth history (`moves_`), so they do. A replay's collectives are checked
// once per step, by Finish's bounded Synchronize, instead of after each
// enqueue. The layer loop itself is layer_enqueue.h.
//
// On devices of compute capability 9.0 and later the decode-path kernels
// (skinny and decode GEMMs, decode attention, norms, adds) launch with
// programmatic dependent launch (when `cuda_pdl`;
// kernels/cuda/launch.cuh): each may start, and load its weights, while the
// kernel before it finishes, and waits for it inside.
//
//   TPS_ASSIGN_OR_RETURN(std::unique_ptr<ForwardBackend> fb,
//                        CreateCudaForward(model.config(), plan, *nccl_comm, {.device =
//                        local_rank}));
#ifndef TPSERVE_WORKER_ENGINE_CUDA_CUDA_FORWARD_H_
#define TPSERVE_WORKER_ENGINE_CUDA_CUDA_FORWARD_H_

#include <memory>

#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"
#include "worker/engine/forward_backend.h"
#include "worker/engine/shard_plan.h"
#include "worker/model/model_config.h"

namespace tpserve {

// FAILED_PRECONDITION when no CUDA device is visible, `options.device` does not
// exist, or a multi-rank `comm` is not NCCL; INVALID_ARGUMENT for a model the
// kernels cannot run (head_dim above 256). `comm` must outlive the backend.
[[nodiscard]] absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaForward(
    const ModelConfig& config, ShardPlan plan, Communicator& comm,
    const ForwardBackendOptions& options = {});

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_CUDA_CUDA_FORWARD_H_
