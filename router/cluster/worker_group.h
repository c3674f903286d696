// WorkerGroup: the router's gRPC clients for one set of tensor-parallel worker
// ranks (one address per rank). Every call fans out to all ranks at once and
// reports per rank, naming it; GroupSupervisor (group_supervisor.h) drives
// epochs, health and recovery on top of it.
//
//   WorkerGroup group({"127.0.0.1:50061", "127.0.0.1:50062"});
//   std::vector<absl::StatusOr<v1::InfoResponse>> infos = group.Info(absl::Seconds(2));
//   TPS_RETURN_IF_ERROR(group.Join(join_request, absl::Seconds(60)));
//   group.StepAsync(std::move(request), absl::Seconds(10),
//                   [](absl::StatusOr<v1::StepResponse> r) { ... });
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
#include "grpcpp/security/credentials.h"
#include "proto/tpserve/v1/worker.grpc.pb.h"

namespace tpserve {

class WorkerGroup {
 public:
  using StepCallback = std::function<void(absl::StatusOr<v1::StepResponse>)>;

  // `addresses[r]` is rank r's gRPC address ("host:port"); `credentials`
  // null = plaintext (the router passes the cluster mTLS ones).
  explicit WorkerGroup(std::vector<std::string> addresses,
                       std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);
  // Waits for fan-outs still in flight (each has a deadline).
  ~WorkerGroup();

  int world_size() const { return static_cast<int>(stubs_.size()); }
  const std::vector<std::string>& addresses() const { return addresses_; }

  // Info / Health of every rank, concurrently, each within `timeout`.
  std::vector<absl::StatusOr<v1::InfoResponse>> Info(absl::Duration timeout);
  std::vector<absl::StatusOr<v1::HealthResponse>> Health(absl::Duration timeout);

  // Join on every rank concurrently; the first failure, naming the rank.
  [[nodiscard]] absl::Status Join(const v1::JoinRequest& request, absl::Duration timeout);

  // Abort(epoch) on every rank, best effort, without waiting for answers.
  void Abort(uint64_t epoch, const std::string& reason);

  // Sends `request` to every rank concurrently; `done` runs once, on a gRPC
  // thread: the first failure (naming the rank) or rank 0's response with
  // engine_seconds = the slowest rank's.
  void StepAsync(v1::StepRequest request, absl::Duration timeout, StepCallback done);

  // Blocking form of StepAsync.
  [[nodiscard]] absl::StatusOr<v1::StepResponse> Step(const v1::StepRequest& request,
                                                      absl::Duration timeout);

  // Drops per-sequence state on every rank.
  [[nodiscard]] absl::Status Free(const std::vector<uint64_t>& seq_ids);

  // UNAVAILABLE "worker rank r (address) <what> failed: <grpc message>".
  absl::Status RankError(const grpc::Status& s, int rank, absl::string_view what) const;

 private:
  // Runs `call(rank, context, done)` on every rank and waits for all answers.
  std::vector<grpc::Status> CallAll(
      absl::Duration timeout,
      const std::function<void(int, grpc::ClientContext*, std::function<void(grpc::Status)>)>&
          call);
  void AddInflight(int n);

  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<v1::Worker::Stub>> stubs_;
  // Asynchronous calls whose last rank has not answered yet. A step reports
  // its first failure at once, so calls can outlive StepAsync; the destructor
  // waits for them so no callback touches a dead group.
  absl::Mutex inflight_mu_;
  int inflight_ ABSL_GUARDED_BY(inflight_mu_) = 0;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_CLUSTER_WORKER_GROUP_H_
