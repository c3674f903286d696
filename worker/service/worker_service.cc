#include "worker/service/worker_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "worker/service/step_convert.h"

namespace tpserve {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// Errors after which the group cannot run another collective.
bool BreaksGroup(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

}  // namespace

WorkerService::WorkerService(int rank, int world_size, std::string backend)
    : rank_(rank), world_size_(world_size), backend_(std::move(backend)) {
  info_.set_rank(rank);
  info_.set_world_size(world_size);
  info_.set_backend(backend_);
}

void WorkerService::SetProgress(const std::string& progress) {
  std::lock_guard<std::mutex> lock(info_mu_);
  progress_ = progress;
}

void WorkerService::SetModel(const ModelConfig& config) {
  std::lock_guard<std::mutex> lock(info_mu_);
  info_.set_model_name(config.name);
  info_.set_architecture(config.architecture);
  info_.set_vocab_size(config.vocab_size);
  info_.set_context_length(config.context_length);
  info_.set_num_layers(config.num_layers);
  info_.clear_eos_token_ids();
  for (int32_t id : config.stop_ids) info_.add_eos_token_ids(id);
  if (info_.eos_token_ids_size() == 0 && config.eos_id >= 0) info_.add_eos_token_ids(config.eos_id);
}

void WorkerService::SetEngine(Engine* engine, WorkerMetrics* metrics) {
  std::lock_guard<std::mutex> lock(info_mu_);
  engine_ = engine;
  metrics_ = metrics;
  info_.set_kv_num_blocks(engine->num_kv_blocks());
  info_.set_kv_block_size(engine->block_size());
  info_.set_weight_bytes(engine->weight_bytes());
  progress_ = "loaded";
}

grpc::Status WorkerService::Info(grpc::ServerContext*, const v1::InfoRequest*,
                                 v1::InfoResponse* response) {
  std::lock_guard<std::mutex> lock(info_mu_);
  *response = info_;
  response->set_loaded(engine_ != nullptr && broken_.ok());
  response->set_load_progress(broken_.ok() ? progress_ : std::string(broken_.message()));
  return grpc::Status::OK;
}

grpc::Status WorkerService::Step(grpc::ServerContext*, const v1::StepRequest* request,
                                 v1::StepResponse* response) {
  Engine* engine;
  WorkerMetrics* metrics;
  {
    std::lock_guard<std::mutex> lock(info_mu_);
    if (!broken_.ok()) return ToGrpc(broken_);
    engine = engine_;
    metrics = metrics_;
  }
  if (engine == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat("rank ", rank_, " is still loading"));
  }
  std::lock_guard<std::mutex> step_lock(step_mu_);
  if (request->free_seq_ids_size() > 0) {
    std::vector<uint64_t> ids(request->free_seq_ids().begin(), request->free_seq_ids().end());
    engine->Free(ids);
  }
  response->set_step_id(request->step_id());
  if (request->seqs_size() == 0) return grpc::Status::OK;
  const absl::Time start = absl::Now();
  absl::StatusOr<StepOutput> out = engine->Step(ToStepBatch(*request));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (!out.ok()) {
    metrics->StepFailed();
    absl::Status s = absl::Status(
        out.status().code(),
        absl::StrCat("rank ", rank_, " step ", request->step_id(), ": ", out.status().message()));
    if (BreaksGroup(s)) {
      std::lock_guard<std::mutex> lock(info_mu_);
      if (broken_.ok()) broken_ = absl::UnavailableError(s.message());
    }
    return ToGrpc(s);
  }
  const StepTimings& t = engine->last_timings();
  metrics->ObserveStep(t.total_s, t.comm_s, t.sample_s, t.tokens, t.graph_replay);
  FillStepResponse(*out, response);
  response->set_engine_seconds(seconds);
  return grpc::Status::OK;
}

grpc::Status WorkerService::Free(grpc::ServerContext*, const v1::FreeRequest* request,
                                 v1::FreeResponse*) {
  Engine* engine;
  {
    std::lock_guard<std::mutex> lock(info_mu_);
    engine = engine_;
  }
  if (engine == nullptr) return grpc::Status::OK;  // nothing to forget yet
  std::lock_guard<std::mutex> step_lock(step_mu_);
  std::vector<uint64_t> ids(request->seq_ids().begin(), request->seq_ids().end());
  engine->Free(ids);
  return grpc::Status::OK;
}

grpc::Status WorkerService::Health(grpc::ServerContext*, const v1::HealthRequest*,
                                   v1::HealthResponse* response) {
  std::lock_guard<std::mutex> lock(info_mu_);
  if (!broken_.ok()) return ToGrpc(broken_);
  response->set_loaded(engine_ != nullptr);
  response->set_rank(rank_);
  return grpc::Status::OK;
}

}  // namespace tpserve
