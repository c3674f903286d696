// FakeWorkerService: an in-process tpserve.v1.Worker for router tests. It
// follows the epoch protocol (Join sets the epoch, Step refuses other
// epochs, Abort breaks the epoch) without an engine: the sampled token is the
// sequence's first input token + 1. Knobs make it fail, hang or disagree.
//
//   FakeWorkerService w(/*rank=*/0, /*world_size=*/2);
//   FakeWorkerServer server(&w);          // listens on 127.0.0.1:<free port>
//   WorkerGroup group({server.address(), ...});
#ifndef TPSERVE_ROUTER_CLUSTER_FAKE_WORKER_SERVICE_H_
#define TPSERVE_ROUTER_CLUSTER_FAKE_WORKER_SERVICE_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "proto/tpserve/v1/worker.grpc.pb.h"

namespace tpserve {

class FakeWorkerService final : public v1::Worker::Service {
 public:
  FakeWorkerService(int rank, int world_size) : rank_(rank), world_size_(world_size) {}

  grpc::Status Info(grpc::ServerContext*, const v1::InfoRequest*, v1::InfoResponse* r) override {
    r->set_loaded(info_calls.fetch_add(1) >= loaded_after);
    r->set_load_progress("fake loading");
    r->set_rank(reported_rank >= 0 ? reported_rank.load() : rank_);
    r->set_world_size(world_size_);
    r->set_model_name("m");
    r->set_model_fingerprint(fingerprint);
    r->set_vocab_size(100);
    r->set_kv_num_blocks(blocks);
    r->set_kv_block_size(16);
    r->set_epoch(epoch);
    return grpc::Status::OK;
  }
  grpc::Status Step(grpc::ServerContext*, const v1::StepRequest* req,
                    v1::StepResponse* r) override {
    steps.fetch_add(1);
    if (step_delay > absl::ZeroDuration()) absl::SleepFor(step_delay);
    if (fail_steps) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "boom");
    if (req->epoch() != epoch || broken) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("rank ", rank_, " fenced: epoch ", epoch.load(), " vs ",
                                       req->epoch()));
    }
    last_step_epoch = req->epoch();
    r->set_step_id(req->step_id());
    r->set_engine_seconds(0.001 * (rank_ + 1));
    if (rank_ == 0) {
      for (const v1::SequenceInput& s : req->seqs()) {
        if (!s.sample()) continue;
        v1::SampledToken* t = r->add_tokens();
        t->set_seq_id(s.seq_id());
        t->set_token(s.tokens(0) + 1);
      }
    }
    return grpc::Status::OK;
  }
  grpc::Status Free(grpc::ServerContext*, const v1::FreeRequest* req, v1::FreeResponse*) override {
    freed += req->seq_ids_size();
    return grpc::Status::OK;
  }
  grpc::Status Health(grpc::ServerContext*, const v1::HealthRequest*,
                      v1::HealthResponse* r) override {
    if (health_delay > absl::ZeroDuration()) absl::SleepFor(health_delay);
    r->set_loaded(true);
    r->set_rank(rank_);
    r->set_epoch(broken ? 0 : epoch.load());
    return grpc::Status::OK;
  }
  grpc::Status Join(grpc::ServerContext*, const v1::JoinRequest* req, v1::JoinResponse*) override {
    joins.fetch_add(1);
    if (req->model_fingerprint() != fingerprint) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "fingerprint differs");
    }
    epoch = req->epoch();
    broken = false;
    return grpc::Status::OK;
  }
  grpc::Status Abort(grpc::ServerContext*, const v1::AbortRequest* req,
                     v1::AbortResponse*) override {
    if (req->epoch() == epoch) broken = true;
    aborts.fetch_add(1);
    return grpc::Status::OK;
  }

  const int rank_;
  const int world_size_;
  int loaded_after = 0;
  std::atomic<int> reported_rank{-1};
  int blocks = 100;
  std::string fingerprint = "fp1-same";
  std::atomic<bool> fail_steps{false};
  absl::Duration step_delay = absl::ZeroDuration();
  absl::Duration health_delay = absl::ZeroDuration();
  std::atomic<uint64_t> epoch{0};
  std::atomic<bool> broken{false};
  std::atomic<uint64_t> last_step_epoch{0};
  std::atomic<int> info_calls{0};
  std::atomic<int> steps{0};
  std::atomic<int> joins{0};
  std::atomic<int> aborts{0};
  std::atomic<int> freed{0};
};

// Serves one FakeWorkerService on 127.0.0.1:<free port>.
class FakeWorkerServer {
 public:
  explicit FakeWorkerServer(FakeWorkerService* service) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(service);
    server_ = b.BuildAndStart();
  }
  ~FakeWorkerServer() { Shutdown(); }
  void Shutdown() {
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_CLUSTER_FAKE_WORKER_SERVICE_H_
