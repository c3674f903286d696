// WorkerService: the tpserve.v1.Worker gRPC service of one tensor-parallel
// rank. It answers Info/Health at once (loaded=false with a progress line
// while the shard loads) and runs Step/Free on the engine once SetEngine is
// called. Steps are serialized: the router sends one step at a time and every
// rank must run them in the same order.
//
// A communicator failure (a dead peer, a collective timeout) leaves the group
// unusable: the service then fails Step and Health with UNAVAILABLE so the
// router stops serving and reports it.
//
//   WorkerService service(rank, world_size, "cpu");
//   builder.RegisterService(&service);
//   service.SetProgress("loading weights");
//   service.SetModel(model->config());
//   service.SetEngine(engine.get(), &metrics);
#ifndef TPSERVE_WORKER_SERVICE_WORKER_SERVICE_H_
#define TPSERVE_WORKER_SERVICE_WORKER_SERVICE_H_

#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "proto/tpserve/v1/worker.grpc.pb.h"
#include "worker/engine/engine.h"
#include "worker/model/model_config.h"
#include "worker/service/worker_metrics.h"

namespace tpserve {

class WorkerService final : public v1::Worker::Service {
 public:
  WorkerService(int rank, int world_size, std::string backend);

  void SetProgress(const std::string& progress);
  void SetModel(const ModelConfig& config);
  // Marks the rank loaded. `engine` and `metrics` must outlive the service.
  void SetEngine(Engine* engine, WorkerMetrics* metrics);

  grpc::Status Info(grpc::ServerContext* context, const v1::InfoRequest* request,
                    v1::InfoResponse* response) override;
  grpc::Status Step(grpc::ServerContext* context, const v1::StepRequest* request,
                    v1::StepResponse* response) override;
  grpc::Status Free(grpc::ServerContext* context, const v1::FreeRequest* request,
                    v1::FreeResponse* response) override;
  grpc::Status Health(grpc::ServerContext* context, const v1::HealthRequest* request,
                      v1::HealthResponse* response) override;

 private:
  const int rank_;
  const int world_size_;
  const std::string backend_;

  std::mutex info_mu_;  // guards the fields below up to engine_
  std::string progress_ = "starting";
  v1::InfoResponse info_;
  Engine* engine_ = nullptr;
  WorkerMetrics* metrics_ = nullptr;
  absl::Status broken_;  // first communicator failure

  std::mutex step_mu_;  // one Step/Free at a time, in arrival order
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_SERVICE_WORKER_SERVICE_H_
