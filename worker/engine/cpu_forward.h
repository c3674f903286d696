// CpuForward: the Engine's CPU backend (EngineOptions::backend = "cpu") and
// the reference twin of the device backends. One tensor-parallel rank's
// forward pass on kernels/cpu with host buffers: the rank's ShardWeights as
// loaded (quantized matrices run as quantized blocks, or f32 when the Engine
// dequantized them), the host KvCachePool, activations in grown-on-demand
// scratch, and the collectives (all-reduce after the embedding and after each
// row-parallel projection, all-gather of the LM-head rows) on host buffers
// through any communicator.
//
//   std::unique_ptr<ForwardBackend> fb =
//       CreateCpuForward(model.config(), plan, comm, /*num_threads=*/4);
//   TPS_RETURN_IF_ERROR(fb->Load(std::move(weights), kv_shape, num_blocks));
#ifndef TPSERVE_WORKER_ENGINE_CPU_FORWARD_H_
#define TPSERVE_WORKER_ENGINE_CPU_FORWARD_H_

#include <memory>

#include "worker/comm/communicator.h"
#include "worker/engine/forward_backend.h"
#include "worker/engine/shard_plan.h"
#include "worker/model/model_config.h"

namespace tpserve {

// `comm` must outlive the backend; num_threads >= 1. `tp_invariant`: the
// row-parallel projections and their all-reduces run in fixed point
// (ForwardBackendOptions::tp_invariant).
std::unique_ptr<ForwardBackend> CreateCpuForward(const ModelConfig& config, ShardPlan plan,
                                                 Communicator& comm, int num_threads,
                                                 bool tp_invariant = false);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_CPU_FORWARD_H_
