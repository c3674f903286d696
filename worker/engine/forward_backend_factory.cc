#include "worker/engine/forward_backend_factory.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/engine/cpu_forward.h"
#include "worker/engine/cuda/cuda_forward.h"

namespace tpserve {

absl::Status CheckForwardBackendName(const std::string& name) {
  if (name == "cpu" || name == "cuda") return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown engine backend '", name, "'; use cpu or cuda"));
}

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateForwardBackend(
    const std::string& name, const ModelConfig& config, ShardPlan plan, Communicator& comm,
    const ForwardBackendOptions& options) {
  TPS_RETURN_IF_ERROR(CheckForwardBackendName(name));
  if (name == "cuda") {
    return CreateCudaForward(config, std::move(plan), comm, options);
  }
  return CreateCpuForward(config, std::move(plan), comm, options.num_threads, options.tp_invariant);
}

}  // namespace tpserve
