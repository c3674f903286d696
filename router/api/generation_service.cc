#include "router/api/generation_service.h"

#include <chrono>
#include <deque>
#include <functional>
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
#include "router/api/call_metadata.h"

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
    Sink(GenerateReactor* reactor, FrontendMetrics* metrics, int64_t max_buffer_bytes)
        : reactor_(reactor), metrics_(metrics), max_buffer_bytes_(max_buffer_bytes) {}

    // Charges the stream's tokens to `lease` and frees it at Close.
    void SetLease(std::unique_ptr<ApiKeys::Lease> lease) {
      absl::MutexLock lock(&mu_);
      lease_ = std::move(lease);
    }
    // How the sink cancels its sequence when the client stops reading.
    void SetCancel(std::function<void()> cancel) {
      absl::MutexLock lock(&mu_);
      cancel_ = std::move(cancel);
    }

    void Send(v1::GenerateResponse response) override {
      std::function<void()> cancel;
      {
        absl::MutexLock lock(&mu_);
        if (response.has_usage()) usage_ = response.usage();
        if (lease_ != nullptr) lease_->AddTokens(response.token_ids_size());
        if (reactor_ == nullptr || finish_.has_value()) return;
        grpc::ByteBuffer bytes = ToByteBuffer(response);
        queued_bytes_ += static_cast<int64_t>(bytes.Length());
        queue_.push_back(std::move(bytes));
        if (max_buffer_bytes_ > 0 && queued_bytes_ > max_buffer_bytes_) {
          // The client is not reading: end the stream now rather than hold
          // its responses (and its KV blocks) without bound.
          Overflow();
          cancel = std::move(cancel_);
        }
      }
      if (cancel) cancel();
      Pump();
    }

    void Close(absl::Status status) override {
      {
        absl::MutexLock lock(&mu_);
        if (finish_.has_value()) return;
        SetFinish(status);
      }
      Pump();
    }

    void OnWriteDone(bool ok) {
      {
        absl::MutexLock lock(&mu_);
        writing_ = false;
        if (!queue_.empty()) {
          queued_bytes_ -= static_cast<int64_t>(queue_.front().Length());
          queue_.pop_front();
        }
        if (!ok) {  // the client is gone; OnCancel follows
          queue_.clear();
          queued_bytes_ = 0;
        }
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
    //
    // After an overflow the finish goes out at once, next to the write the
    // client never completes: the call then holds one message until the
    // client reads (and sees RESOURCE_EXHAUSTED), disconnects, or the
    // connection reaches its maximum age.
    void Pump() {
      GenerateReactor* reactor;
      const grpc::ByteBuffer* next = nullptr;
      grpc::Status finish;
      {
        absl::MutexLock lock(&mu_);
        reactor = reactor_;
        if (reactor == nullptr || finish_sent_) return;
        if (writing_ && !overflowed_) return;
        if (!queue_.empty() && !overflowed_) {
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

    void Overflow() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      overflowed_ = true;
      // Keep only the message being written (gRPC holds a pointer to it).
      while (queue_.size() > (writing_ ? 1u : 0u)) queue_.pop_back();
      const absl::Status status = absl::ResourceExhaustedError(absl::StrCat(
          "the client is not reading its stream: more than ", max_buffer_bytes_,
          " bytes of responses are waiting to be sent (--stream_buffer_bytes); the request is "
          "cancelled"));
      SetFinish(status);
    }

    // The stream's final status: frees the key's stream slot, counts the request.
    void SetFinish(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      finish_ = ToGrpcStatus(status);
      lease_.reset();
      if (metrics_ != nullptr) {
        metrics_->CountRequest(Frontend::kGrpc, status.code(),
                               absl::ToDoubleSeconds(absl::Now() - arrival_),
                               usage_.prompt_tokens(), usage_.completion_tokens());
      }
    }

    absl::Mutex mu_;
    GenerateReactor* reactor_ ABSL_GUARDED_BY(mu_);               // null after OnDone
    FrontendMetrics* const metrics_;                              // may be null
    const int64_t max_buffer_bytes_;                              // <= 0: unbounded
    std::unique_ptr<ApiKeys::Lease> lease_ ABSL_GUARDED_BY(mu_);  // null without keys
    std::function<void()> cancel_ ABSL_GUARDED_BY(mu_);
    int64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
    bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
    const absl::Time arrival_ = absl::Now();
    v1::Usage usage_ ABSL_GUARDED_BY(mu_);  // from the last response
    // The front is being written.
    std::deque<grpc::ByteBuffer> queue_ ABSL_GUARDED_BY(mu_);
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    std::optional<grpc::Status> finish_ ABSL_GUARDED_BY(mu_);
    bool finish_sent_ ABSL_GUARDED_BY(mu_) = false;
  };

  GenerateReactor(FrontendMetrics* metrics, int64_t max_buffer_bytes)
      : sink_(std::make_shared<Sink>(this, metrics, max_buffer_bytes)) {}

  std::shared_ptr<Sink> sink() { return sink_; }
  void Attach(ServingLoop* loop, uint64_t seq_id) {
    loop_ = loop;
    seq_id_ = seq_id;
    sink_->SetCancel([loop, seq_id] { loop->Cancel(seq_id); });
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

GenerationService::GenerationService(const Tokenizer* tokenizer, const ChatTemplate* chat_template,
                                     Options options)
    : path_(tokenizer, chat_template), options_(options) {}

absl::Status GenerationService::Authenticate(const grpc::ServerContextBase& context) const {
  if (options_.api_keys == nullptr) return absl::OkStatus();
  return options_.api_keys->Authenticate(AuthorizationMetadata(context)).status();
}

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
  auto* reactor = new GenerateReactor(path_.frontend_metrics(), options_.stream_buffer_bytes);
  if (options_.api_keys != nullptr) {
    absl::StatusOr<std::unique_ptr<ApiKeys::Lease>> lease =
        options_.api_keys->Admit(AuthorizationMetadata(*context));
    if (!lease.ok()) {
      reactor->sink()->Close(lease.status());
      return reactor;
    }
    reactor->sink()->SetLease(*std::move(lease));
  }
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
    TPS_RETURN_IF_ERROR(Authenticate(*context));
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

grpc::Status GenerationService::ModelInfo(grpc::ServerContext* context, const v1::ModelInfoRequest*,
                                          v1::ModelInfoResponse* response) {
  if (absl::Status s = Authenticate(*context); !s.ok()) return ToGrpcStatus(s);
  absl::StatusOr<RequestPath::Serving> serving = path_.Ready();
  if (!serving.ok()) return ToGrpcStatus(serving.status());
  *response = serving->info;
  return grpc::Status::OK;
}

}  // namespace tpserve
