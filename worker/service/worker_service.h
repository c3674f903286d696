// WorkerService: the tpserve.v1.Worker gRPC service of one tensor-parallel
// rank. It answers Info/Health at once (loaded=false with a progress line
// while the shard loads) and, once SetEngine is called, takes part in group
// epochs: Join(epoch) swaps in a fresh communicator built by the
// CommFactory under that epoch's rendezvous prefix (weights stay loaded, KV
// contents and per-sequence state are dropped), Step runs only for the
// current epoch (a step of any other epoch is refused: fencing), Abort ends
// the epoch so a collective blocked on a dead peer returns.
//
// Steps and joins are serialized: the router sends one step at a time and
// every rank must run them in the same order. A communicator failure (dead
// peer, timeout, abort) marks the epoch broken: later steps fail with
// UNAVAILABLE until the router starts the next epoch.
//
//   SwappableCommunicator comm(rank, world_size, "gloo");
//   WorkerService service(rank, world_size, "cpu", &comm, factory);
//   builder.RegisterService(&service);
//   service.SetProgress("loading weights");
//   service.SetModel(model->config(), fingerprint);
//   service.SetEngine(engine.get(), &metrics);   // now the router may Join
#ifndef TPSERVE_WORKER_SERVICE_WORKER_SERVICE_H_
#define TPSERVE_WORKER_SERVICE_WORKER_SERVICE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/tpserve/v1/worker.grpc.pb.h"
#include "worker/comm/swappable_communicator.h"
#include "worker/engine/engine.h"
#include "worker/model/model_config.h"
#include "worker/service/sequence_table.h"
#include "worker/service/worker_metrics.h"

namespace tpserve {

class WorkerService final : public v1::Worker::Service {
 public:
  // Builds the communicator of (session, epoch) within `timeout`.
  using CommFactory = std::function<absl::StatusOr<std::unique_ptr<Communicator>>(
      const std::string& session, uint64_t epoch, absl::Duration timeout)>;
  // Called with true when this rank joins an epoch, false when it breaks.
  using MembershipListener = std::function<void(bool in_group)>;

  // `comm` is the engine's communicator; it must outlive the service.
  WorkerService(int rank, int world_size, std::string backend, SwappableCommunicator* comm,
                CommFactory factory);

  void SetProgress(const std::string& progress);
  void SetModel(const ModelConfig& config, const std::string& fingerprint);
  // Marks the rank loaded. `engine` and `metrics` must outlive the service.
  void SetEngine(Engine* engine, WorkerMetrics* metrics);
  void SetMembershipListener(MembershipListener listener);
  // Logs one line (the worker main's logger).
  void SetLogger(std::function<void(const std::string&)> log);

  grpc::Status Info(grpc::ServerContext* context, const v1::InfoRequest* request,
                    v1::InfoResponse* response) override;
  grpc::Status Step(grpc::ServerContext* context, const v1::StepRequest* request,
                    v1::StepResponse* response) override;
  grpc::Status Free(grpc::ServerContext* context, const v1::FreeRequest* request,
                    v1::FreeResponse* response) override;
  grpc::Status Health(grpc::ServerContext* context, const v1::HealthRequest* request,
                      v1::HealthResponse* response) override;
  grpc::Status Join(grpc::ServerContext* context, const v1::JoinRequest* request,
                    v1::JoinResponse* response) override;
  grpc::Status Abort(grpc::ServerContext* context, const v1::AbortRequest* request,
                     v1::AbortResponse* response) override;

 private:
  // Marks the current epoch broken (first error wins) and tells the listener.
  void Break(const absl::Status& why);
  void Log(const std::string& line);

  const int rank_;
  const int world_size_;
  const std::string backend_;
  SwappableCommunicator* const comm_;
  const CommFactory factory_;

  absl::Mutex mu_;
  std::string progress_ ABSL_GUARDED_BY(mu_) = "starting";
  v1::InfoResponse info_ ABSL_GUARDED_BY(mu_);
  Engine* engine_ ABSL_GUARDED_BY(mu_) = nullptr;
  WorkerMetrics* metrics_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;  // 0: never joined
  std::string session_ ABSL_GUARDED_BY(mu_);
  absl::Status broken_ ABSL_GUARDED_BY(mu_);  // why the current epoch cannot step
  MembershipListener listener_ ABSL_GUARDED_BY(mu_);
  std::function<void(const std::string&)> log_ ABSL_GUARDED_BY(mu_);

  // One Step/Free/Join at a time. Timed, so a Join waits a bounded time for
  // a step that an abort is still unwinding. A std::timed_mutex because that
  // needs try_lock_for: absl::Mutex::LockWhenWithTimeout bounds only the wait
  // for its condition and then blocks until the mutex is free.
  std::timed_mutex step_mu_;
  // Lean steps: per-sequence state of this epoch (guarded by step_mu_).
  SequenceTable sequences_;
  absl::Mutex join_mu_;  // one Join at a time
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_SERVICE_WORKER_SERVICE_H_
