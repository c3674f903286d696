// StepExecutor: where the router's serving loop sends each step.
// GroupSupervisor (a tensor-parallel group over gRPC, with epochs and
// recovery) is the real one; tests use fakes.
//
//   if (executor->ServingEpoch() != 0)
//     executor->StepAsync(std::move(request), [](absl::StatusOr<v1::StepResponse> r) {...});
#ifndef TPSERVE_ROUTER_CLUSTER_STEP_EXECUTOR_H_
#define TPSERVE_ROUTER_CLUSTER_STEP_EXECUTOR_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/tpserve/v1/worker.pb.h"

namespace tpserve {

class StepExecutor {
 public:
  using StepCallback = std::function<void(absl::StatusOr<v1::StepResponse>)>;
  virtual ~StepExecutor() = default;
  // Runs `request` in the current serving epoch (the executor sets
  // request.epoch); `done` is called exactly once, on any thread. A failure
  // ends the epoch: every sequence the workers held is gone.
  virtual void StepAsync(v1::StepRequest request, StepCallback done) = 0;
  // Drops per-sequence worker state outside a step.
  [[nodiscard]] virtual absl::Status Free(const std::vector<uint64_t>& seq_ids) = 0;
  // The epoch steps currently run in; 0 while no group serves (starting or
  // recovering). A change means the workers forgot every sequence.
  virtual uint64_t ServingEpoch() const = 0;
  // Why no group serves (names the rank and the cause); empty while serving.
  virtual std::string DownReason() const = 0;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_CLUSTER_STEP_EXECUTOR_H_
