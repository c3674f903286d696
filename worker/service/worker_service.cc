#include "worker/service/worker_service.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "worker/service/step_convert.h"

namespace tpserve {
namespace {

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

// Time left before the RPC's deadline, less a margin for the reply.
absl::Duration TimeLeft(const grpc::ServerContext* context) {
  const absl::Time deadline = absl::FromChrono(context->deadline());
  return std::max(absl::ZeroDuration(), deadline - absl::Now() - absl::Milliseconds(200));
}

}  // namespace

WorkerService::WorkerService(int rank, int world_size, std::string backend,
                             SwappableCommunicator* comm, CommFactory factory)
    : rank_(rank),
      world_size_(world_size),
      backend_(std::move(backend)),
      comm_(comm),
      factory_(std::move(factory)) {
  info_.set_rank(rank);
  info_.set_world_size(world_size);
  info_.set_backend(backend_);
  broken_ = absl::UnavailableError(absl::StrCat("rank ", rank, " has not joined a group yet"));
}

void WorkerService::SetProgress(const std::string& progress) {
  absl::MutexLock lock(&mu_);
  progress_ = progress;
}

void WorkerService::SetModel(const ModelConfig& config, const std::string& fingerprint) {
  absl::MutexLock lock(&mu_);
  info_.set_model_name(config.name);
  info_.set_architecture(config.architecture);
  info_.set_vocab_size(config.vocab_size);
  info_.set_context_length(config.context_length);
  info_.set_num_layers(config.num_layers);
  info_.clear_eos_token_ids();
  for (int32_t id : config.stop_ids) info_.add_eos_token_ids(id);
  if (info_.eos_token_ids_size() == 0 && config.eos_id >= 0) info_.add_eos_token_ids(config.eos_id);
  info_.set_model_fingerprint(fingerprint);
}

void WorkerService::SetEngine(Engine* engine, WorkerMetrics* metrics) {
  absl::MutexLock lock(&mu_);
  engine_ = engine;
  metrics_ = metrics;
  info_.set_kv_num_blocks(engine->num_kv_blocks());
  info_.set_kv_block_size(engine->block_size());
  info_.set_weight_bytes(engine->weight_bytes());
  progress_ = "loaded; waiting for the router to start a group epoch";
}

void WorkerService::SetMembershipListener(MembershipListener listener) {
  absl::MutexLock lock(&mu_);
  listener_ = std::move(listener);
}

void WorkerService::SetLogger(std::function<void(const std::string&)> log) {
  absl::MutexLock lock(&mu_);
  log_ = std::move(log);
}

void WorkerService::Log(const std::string& line) {
  std::function<void(const std::string&)> log;
  {
    absl::MutexLock lock(&mu_);
    log = log_;
  }
  if (log) log(line);
}

void WorkerService::Break(const absl::Status& why) {
  MembershipListener listener;
  uint64_t epoch;
  {
    absl::MutexLock lock(&mu_);
    if (!broken_.ok()) return;
    broken_ = absl::UnavailableError(why.message());
    listener = listener_;
    epoch = epoch_;
  }
  Log(absl::StrCat("epoch ", epoch, " broken: ", why.message()));
  if (listener) listener(false);
}

grpc::Status WorkerService::Info(grpc::ServerContext*, const v1::InfoRequest*,
                                 v1::InfoResponse* response) {
  absl::MutexLock lock(&mu_);
  *response = info_;
  response->set_loaded(engine_ != nullptr);
  response->set_load_progress(progress_);
  response->set_epoch(epoch_);
  response->set_session(session_);
  response->set_epoch_broken(!broken_.ok());
  return grpc::Status::OK;
}

grpc::Status WorkerService::Step(grpc::ServerContext*, const v1::StepRequest* request,
                                 v1::StepResponse* response) {
  Engine* engine;
  WorkerMetrics* metrics;
  auto check = [&]() -> absl::Status {
    absl::MutexLock lock(&mu_);
    engine = engine_;
    metrics = metrics_;
    if (engine == nullptr) {
      return absl::UnavailableError(absl::StrCat("rank ", rank_, " is still loading"));
    }
    if (request->epoch() != epoch_) {
      return absl::FailedPreconditionError(
          absl::StrCat("rank ", rank_, " is in group epoch ", epoch_, ", refusing step ",
                       request->step_id(), " of epoch ", request->epoch(), " (fenced)"));
    }
    return broken_;
  };
  absl::Status ready = check();
  if (!ready.ok()) return ToGrpcStatus(ready);
  std::lock_guard<std::timed_mutex> step_lock(step_mu_);
  ready = check();  // a Join may have run while this step waited
  if (!ready.ok()) return ToGrpcStatus(ready);
  if (request->free_seq_ids_size() > 0) {
    std::vector<uint64_t> ids(request->free_seq_ids().begin(), request->free_seq_ids().end());
    engine->Free(ids);
    sequences_.Erase(ids);
  }
  response->set_step_id(request->step_id());
  if (request->seqs_size() == 0) return grpc::Status::OK;
  const absl::Time start = absl::Now();
  absl::StatusOr<StepBatch> batch = sequences_.ToBatch(*request);
  if (!batch.ok()) {
    metrics->StepFailed();
    return ToGrpcStatus(absl::Status(
        batch.status().code(),
        absl::StrCat("rank ", rank_, " epoch ", request->epoch(), ": ", batch.status().message())));
  }
  absl::StatusOr<StepOutput> out = engine->Step(*batch);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (!out.ok()) {
    metrics->StepFailed();
    absl::Status s = absl::Status(
        out.status().code(), absl::StrCat("rank ", rank_, " epoch ", request->epoch(), " step ",
                                          request->step_id(), ": ", out.status().message()));
    if (BreaksGroup(s)) Break(s);
    return ToGrpcStatus(s);
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
    absl::MutexLock lock(&mu_);
    engine = engine_;
  }
  if (engine == nullptr) return grpc::Status::OK;  // nothing to forget yet
  std::lock_guard<std::timed_mutex> step_lock(step_mu_);
  std::vector<uint64_t> ids(request->seq_ids().begin(), request->seq_ids().end());
  engine->Free(ids);
  sequences_.Erase(ids);
  return grpc::Status::OK;
}

grpc::Status WorkerService::Health(grpc::ServerContext*, const v1::HealthRequest*,
                                   v1::HealthResponse* response) {
  absl::MutexLock lock(&mu_);
  response->set_loaded(engine_ != nullptr);
  response->set_rank(rank_);
  response->set_epoch(broken_.ok() ? epoch_ : 0);
  return grpc::Status::OK;
}

grpc::Status WorkerService::Join(grpc::ServerContext* context, const v1::JoinRequest* request,
                                 v1::JoinResponse* response) {
  absl::MutexLock join_lock(&join_mu_);
  const absl::Time start = absl::Now();
  Engine* engine;
  std::string fingerprint;
  {
    absl::MutexLock lock(&mu_);
    engine = engine_;
    fingerprint = info_.model_fingerprint();
  }
  if (engine == nullptr) {
    return ToGrpcStatus(absl::UnavailableError(absl::StrCat("rank ", rank_, " is still loading")));
  }
  if (request->epoch() == 0 || request->world_size() != world_size_) {
    return ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat(
        "rank ", rank_, " was started with --world_size=", world_size_, " but the router forms a ",
        "group of ", request->world_size(), " (epoch ", request->epoch(), ")")));
  }
  if (!request->model_fingerprint().empty() && request->model_fingerprint() != fingerprint) {
    return ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat(
        "rank ", rank_, " loaded a model with fingerprint ", fingerprint, " but the group's is ",
        request->model_fingerprint(), "; start every rank with the same --model file")));
  }
  // Leave the old epoch first: a step blocked in a collective returns once
  // its communicator is aborted.
  Break(absl::CancelledError(absl::StrCat("leaving for epoch ", request->epoch())));
  comm_->Clear();
  std::unique_lock<std::timed_mutex> step_lock(step_mu_, std::defer_lock);
  if (!step_lock.try_lock_for(absl::ToChronoNanoseconds(TimeLeft(context)))) {
    return ToGrpcStatus(absl::UnavailableError(absl::StrCat(
        "rank ", rank_, ": the previous epoch's step did not finish before the join deadline")));
  }
  engine->ResetSequences();
  sequences_.Clear();
  Log(absl::StrCat("joining group epoch ", request->epoch(), " (session ", request->session(),
                   ")"));
  absl::StatusOr<std::unique_ptr<Communicator>> impl =
      factory_(request->session(), request->epoch(), TimeLeft(context));
  if (!impl.ok()) {
    Log(absl::StrCat("join of epoch ", request->epoch(), " failed: ", impl.status().message()));
    return ToGrpcStatus(absl::UnavailableError(absl::StrCat(
        "rank ", rank_, " joining epoch ", request->epoch(), ": ", impl.status().message())));
  }
  comm_->Set(*std::move(impl));
  absl::Status checked = engine->CheckGroup();
  if (!checked.ok()) {
    comm_->Clear();
    return ToGrpcStatus(absl::Status(
        checked.code(),
        absl::StrCat("rank ", rank_, " epoch ", request->epoch(), ": ", checked.message())));
  }
  MembershipListener listener;
  {
    absl::MutexLock lock(&mu_);
    epoch_ = request->epoch();
    session_ = request->session();
    broken_ = absl::OkStatus();
    progress_ = absl::StrCat("serving in group epoch ", epoch_);
    listener = listener_;
  }
  response->set_seconds(absl::ToDoubleSeconds(absl::Now() - start));
  Log(absl::StrCat("joined group epoch ", request->epoch(), " in ",
                   absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1)))));
  if (listener) listener(true);
  return grpc::Status::OK;
}

grpc::Status WorkerService::Abort(grpc::ServerContext*, const v1::AbortRequest* request,
                                  v1::AbortResponse*) {
  {
    absl::MutexLock lock(&mu_);
    if (request->epoch() != epoch_ || !broken_.ok()) return grpc::Status::OK;
  }
  Break(absl::CancelledError(
      absl::StrCat("the router ended epoch ", request->epoch(), ": ", request->reason())));
  comm_->Abort();
  return grpc::Status::OK;
}

}  // namespace tpserve
