// CudaForward: the Engine's CUDA backend (EngineOptions::backend = "cuda").
// One tensor-parallel rank's forward pass on one device with the launchers of
// kernels/cuda/cuda_ops.h: weights uploaded once from the rank's ShardWeights
// (quantized matrices stay quantized; the GEMMs dequantize on the fly), a
// paged KV cache in device memory, activations in grown-on-demand device
// scratch, and the Engine's collectives (all-reduce after the embedding and
// after each row-parallel projection, all-gather of the LM-head rows) on
// device buffers through the communicator, which must be NCCL when the world
// has more than one rank. Everything runs on one stream; the step ends with
// one synchronisation, then rank 0 copies the gathered logits to the host,
// where the Engine samples.
//
// Decode steps of a single-rank group are replayed from CUDA graphs (when
// `cuda_graphs`): the batch is padded to a batch-size bucket (1, 2, 4, 8,
// then multiples of 16 up to kMaxGraphBatch = 64) with inert sequences (KV slot
// -1, a one-token context), the context bound to a power-of-two number of
// 256-token attention partitions, and the block tables to that bound. One
// graph per (batch bucket, partition bucket) is captured on first use and
// replayed while the device buffers it points at stay in place (a larger
// prefill that regrows scratch drops them all). A SmolLM2 decode step is
// ~400 launches of a few microseconds each, so launch overhead, not the
// kernels, bounds batch-1 decode without graphs. Multi-rank groups run
// eagerly (NCCL inside graphs is left for a device-validated change).
//
//   TPS_ASSIGN_OR_RETURN(std::unique_ptr<ForwardBackend> fb,
//                        CreateCudaForward(model.config(), plan, *nccl_comm, local_rank));
#ifndef TPSERVE_WORKER_ENGINE_CUDA_CUDA_FORWARD_H_
#define TPSERVE_WORKER_ENGINE_CUDA_CUDA_FORWARD_H_

#include <memory>

#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"
#include "worker/engine/forward_backend.h"
#include "worker/engine/shard_plan.h"
#include "worker/model/model_config.h"

namespace tpserve {

// Largest decode batch replayed from a graph; larger ones run eagerly. At
// most kernels::cuda::kSkinnyGemmMaxRows, so a captured step only uses
// launchers that set no function attributes (the tensor-core GEMM does).
inline constexpr int kMaxGraphBatch = 64;

// FAILED_PRECONDITION when no CUDA device is visible, `device` does not
// exist, or a multi-rank `comm` is not NCCL; INVALID_ARGUMENT for a model the
// kernels cannot run (head_dim above 256). `comm` must outlive the backend.
[[nodiscard]] absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaForward(
    const ModelConfig& config, ShardPlan plan, Communicator& comm, int device,
    bool cuda_graphs = true);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_CUDA_CUDA_FORWARD_H_
