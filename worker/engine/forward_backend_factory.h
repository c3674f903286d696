// CreateForwardBackend: the ForwardBackend for a backend name ("cpu" runs
// CpuForward, "cuda" CudaForward), so the Engine names hardware only as a
// string.
//
//   TPS_RETURN_IF_ERROR(CheckForwardBackendName(options.backend));
//   TPS_ASSIGN_OR_RETURN(std::unique_ptr<ForwardBackend> fb,
//                        CreateForwardBackend(options.backend, config, plan, comm,
//                                             {.num_threads = 4, .device = 0}));
#ifndef TPSERVE_WORKER_ENGINE_FORWARD_BACKEND_FACTORY_H_
#define TPSERVE_WORKER_ENGINE_FORWARD_BACKEND_FACTORY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"
#include "worker/engine/forward_backend.h"
#include "worker/engine/shard_plan.h"
#include "worker/model/model_config.h"

namespace tpserve {

// INVALID_ARGUMENT unless `name` is "cpu" or "cuda".
[[nodiscard]] absl::Status CheckForwardBackendName(const std::string& name);

// INVALID_ARGUMENT for an unknown name; the CUDA backend's
// FAILED_PRECONDITION when no usable device or communicator is there.
// `comm` must outlive the backend.
[[nodiscard]] absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateForwardBackend(
    const std::string& name, const ModelConfig& config, ShardPlan plan, Communicator& comm,
    const ForwardBackendOptions& options);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_FORWARD_BACKEND_FACTORY_H_
