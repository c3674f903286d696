// WorkerGroup: the router's clients for the tensor-parallel worker ranks.
// Every Step goes to all ranks at once (they run the forward pass together and
// all-reduce between them); the sampled tokens come from rank 0. A failed or
// timed-out rank fails the whole step with UNAVAILABLE naming the rank.
//
//   WorkerGroup group({"127.0.0.1:50061", "127.0.0.1:50062"});
//   TPS_ASSIGN_OR_RETURN(ClusterInfo info, group.WaitUntilLoaded(absl::Minutes(5), log));
//   group.StepAsync(std::move(request), [](absl::StatusOr<v1::StepResponse> r) { ... });
//   TPS_ASSIGN_OR_RETURN(v1::StepResponse r, group.Step(request));  // blocking
#ifndef TPSERVE_ROUTER_CLUSTER_WORKER_GROUP_H_
#define TPSERVE_ROUTER_CLUSTER_WORKER_GROUP_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/tpserve/v1/worker.grpc.pb.h"
#include "router/cluster/step_executor.h"

namespace tpserve {

// What the ranks agreed on after loading.
struct ClusterInfo {
  v1::InfoResponse rank0;  // model summary as rank 0 reports it
  int world_size = 0;
  int kv_num_blocks = 0;  // minimum over ranks
  int kv_block_size = 0;
};

class WorkerGroup : public StepExecutor {
 public:
  // `addresses[r]` is rank r's gRPC address ("host:port").
  explicit WorkerGroup(std::vector<std::string> addresses,
                       absl::Duration step_timeout = absl::Seconds(120));
  ~WorkerGroup() override;

  int world_size() const { return static_cast<int>(stubs_.size()); }
  const std::vector<std::string>& addresses() const { return addresses_; }

  // Polls Info on every rank until all report loaded, then checks that they
  // agree (world size, rank numbering, model, block size). `progress` gets
  // human-readable lines while waiting.
  [[nodiscard]] absl::StatusOr<ClusterInfo> WaitUntilLoaded(
      absl::Duration timeout, const std::function<void(const std::string&)>& progress);

  // Sends `request` to every rank concurrently; `done` runs once, on a gRPC
  // thread, with rank 0's response (engine_seconds = the slowest rank's).
  void StepAsync(v1::StepRequest request, StepCallback done) override;

  // Blocking form of StepAsync.
  [[nodiscard]] absl::StatusOr<v1::StepResponse> Step(const v1::StepRequest& request);

  // Drops per-sequence state on every rank.
  [[nodiscard]] absl::Status Free(const std::vector<uint64_t>& seq_ids) override;

  // OK when every rank answers Health within `timeout`.
  [[nodiscard]] absl::Status CheckHealth(absl::Duration timeout);

 private:
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<v1::Worker::Stub>> stubs_;
  absl::Duration step_timeout_;
  // Fan-outs whose last rank has not answered yet. A step reports its first
  // failure at once, so calls can outlive Step(); the destructor waits for
  // them (each has a deadline) so no callback touches a dead group.
  absl::Mutex inflight_mu_;
  int inflight_ ABSL_GUARDED_BY(inflight_mu_) = 0;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_CLUSTER_WORKER_GROUP_H_
