#include "router/api/generation_service.h"

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "grpcpp/grpcpp.h"
#include "proto/convert/sampling_convert.h"

namespace tpserve {
namespace {

absl::StatusOr<std::string> ToBytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  grpc::Status s = buffer.Dump(&slices);
  if (!s.ok()) return absl::InvalidArgumentError("request: unreadable message bytes");
  std::string out;
  for (const grpc::Slice& slice : slices) {
    out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return out;
}

grpc::ByteBuffer ToByteBuffer(const google::protobuf::Message& message) {
  std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// Streams one Generate call. Owned by gRPC until OnDone; the serving loop
// reaches it through the shared Sink, which forgets it in OnDone.
class GenerateReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  class Sink final : public ResponseSink {
   public:
    Sink(GenerateReactor* reactor, FrontendMetrics* metrics)
        : reactor_(reactor), metrics_(metrics) {}

    void Send(v1::GenerateResponse response) override {
      {
        absl::MutexLock lock(&mu_);
        if (response.has_usage()) usage_ = response.usage();
        if (reactor_ == nullptr || finish_.has_value()) return;
        queue_.push_back(ToByteBuffer(response));
      }
      Pump();
    }

    void Close(absl::Status status) override {
      {
        absl::MutexLock lock(&mu_);
        if (finish_.has_value()) return;
        finish_ = ToGrpcStatus(status);
        if (metrics_ != nullptr) {
          metrics_->CountRequest(Frontend::kGrpc, status.code(),
                                 absl::ToDoubleSeconds(absl::Now() - arrival_),
                                 usage_.prompt_tokens(), usage_.completion_tokens());
        }
      }
      Pump();
    }

    void OnWriteDone(bool ok) {
      {
        absl::MutexLock lock(&mu_);
        writing_ = false;
        queue_.pop_front();
        if (!ok) queue_.clear();  // the client is gone; OnCancel follows
      }
      Pump();
    }

    void Detach() {
      absl::MutexLock lock(&mu_);
      reactor_ = nullptr;
    }

   private:
    // Starts the next write or the finish. gRPC may run reactions inline, so
    // the reactor is called without holding mu_; `writing_` and
    // `finish_sent_` keep at most one operation outstanding, which also keeps
    // the reactor alive (OnDone needs the finish to complete).
    void Pump() {
      GenerateReactor* reactor;
      const grpc::ByteBuffer* next = nullptr;
      grpc::Status finish;
      {
        absl::MutexLock lock(&mu_);
        reactor = reactor_;
        if (reactor == nullptr || writing_ || finish_sent_) return;
        if (!queue_.empty()) {
          writing_ = true;
          next = &queue_.front();
        } else if (finish_.has_value()) {
          finish_sent_ = true;
          finish = *finish_;
        } else {
          return;
        }
      }
      if (next != nullptr) {
        reactor->StartWrite(next);
      } else {
        reactor->Finish(finish);
      }
    }

    absl::Mutex mu_;
    GenerateReactor* reactor_ ABSL_GUARDED_BY(mu_);  // null after OnDone
    FrontendMetrics* const metrics_;                 // may be null
    const absl::Time arrival_ = absl::Now();
    v1::Usage usage_ ABSL_GUARDED_BY(mu_);  // from the last response
    // The front is being written.
    std::deque<grpc::ByteBuffer> queue_ ABSL_GUARDED_BY(mu_);
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    std::optional<grpc::Status> finish_ ABSL_GUARDED_BY(mu_);
    bool finish_sent_ ABSL_GUARDED_BY(mu_) = false;
  };

  explicit GenerateReactor(FrontendMetrics* metrics)
      : sink_(std::make_shared<Sink>(this, metrics)) {}

  std::shared_ptr<Sink> sink() { return sink_; }
  void Attach(ServingLoop* loop, uint64_t seq_id) {
    loop_ = loop;
    seq_id_ = seq_id;
  }

  void OnWriteDone(bool ok) override { sink_->OnWriteDone(ok); }
  void OnCancel() override {
    if (loop_ != nullptr) loop_->Cancel(seq_id_);
  }
  void OnDone() override {
    sink_->Detach();
    delete this;
  }

 private:
  std::shared_ptr<Sink> sink_;
  ServingLoop* loop_ = nullptr;
  uint64_t seq_id_ = 0;
};

absl::Time DeadlineOf(const grpc::CallbackServerContext& context) {
  auto deadline = context.deadline();
  auto now = std::chrono::system_clock::now();
  if (deadline > now + std::chrono::hours(24 * 365)) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

}  // namespace

GenerationService::GenerationService(const Tokenizer* tokenizer, const ChatTemplate* chat_template)
    : path_(tokenizer, chat_template) {}

void GenerationService::SetReady(ServingLoop* loop, const RequestLimits& limits,
                                 const v1::ModelInfoResponse& info) {
  path_.SetReady(loop, limits, info);
}

void GenerationService::SetUnavailable(const std::string& reason) { path_.SetUnavailable(reason); }

std::string GenerationService::NextRequestId() const { return path_.NextRequestId(); }

absl::StatusOr<GenerateJob> GenerationService::BuildJob(const grpc::ByteBuffer& raw,
                                                        grpc::CallbackServerContext* context,
                                                        const RequestLimits& limits) const {
  TPS_ASSIGN_OR_RETURN(std::string bytes, ToBytes(raw));
  TPS_RETURN_IF_ERROR(CheckUtf8Fields(*v1::GenerateRequest::descriptor(), bytes));
  v1::GenerateRequest request;
  if (!request.ParseFromString(bytes)) {
    return absl::InvalidArgumentError("request is not a valid tpserve.v1.GenerateRequest");
  }
  return path_.BuildJob(request, DeadlineOf(*context), limits);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerationService::Generate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  auto* reactor = new GenerateReactor(path_.frontend_metrics());
  absl::StatusOr<RequestPath::Serving> serving = path_.Ready();
  if (!serving.ok()) {
    reactor->sink()->Close(serving.status());
    return reactor;
  }
  absl::StatusOr<GenerateJob> job = BuildJob(*request, context, serving->limits);
  if (!job.ok()) {
    reactor->sink()->Close(job.status());
    return reactor;
  }
  job->sink = reactor->sink();
  reactor->Attach(serving->loop, serving->loop->Submit(*std::move(job)));
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request,
                                                      grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto run = [&]() -> absl::Status {
    TPS_ASSIGN_OR_RETURN(std::string bytes, ToBytes(*request));
    TPS_RETURN_IF_ERROR(CheckUtf8Fields(*v1::TokenizeRequest::descriptor(), bytes));
    v1::TokenizeRequest req;
    if (!req.ParseFromString(bytes)) {
      return absl::InvalidArgumentError("request is not a valid tpserve.v1.TokenizeRequest");
    }
    TPS_ASSIGN_OR_RETURN(v1::TokenizeResponse out, path_.Tokenize(req));
    *response = ToByteBuffer(out);
    return absl::OkStatus();
  };
  reactor->Finish(ToGrpcStatus(run()));
  return reactor;
}

grpc::Status GenerationService::ModelInfo(grpc::ServerContext*, const v1::ModelInfoRequest*,
                                          v1::ModelInfoResponse* response) {
  absl::StatusOr<RequestPath::Serving> serving = path_.Ready();
  if (!serving.ok()) return ToGrpcStatus(serving.status());
  *response = serving->info;
  return grpc::Status::OK;
}

}  // namespace tpserve
