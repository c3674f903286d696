// StepExecutor: where the router's serving loop sends each step. WorkerGroup
// (all tensor-parallel ranks over gRPC) is the real one; tests use a fake.
//
//   executor->StepAsync(std::move(request), [](absl::StatusOr<v1::StepResponse> r) {...});
#ifndef TPSERVE_ROUTER_CLUSTER_STEP_EXECUTOR_H_
#define TPSERVE_ROUTER_CLUSTER_STEP_EXECUTOR_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/tpserve/v1/worker.pb.h"

namespace tpserve {

class StepExecutor {
 public:
  using StepCallback = std::function<void(absl::StatusOr<v1::StepResponse>)>;
  virtual ~StepExecutor() = default;
  // Runs `request`; `done` is called exactly once, on any thread.
  virtual void StepAsync(v1::StepRequest request, StepCallback done) = 0;
  // Drops per-sequence worker state outside a step.
  [[nodiscard]] virtual absl::Status Free(const std::vector<uint64_t>& seq_ids) = 0;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_CLUSTER_STEP_EXECUTOR_H_
