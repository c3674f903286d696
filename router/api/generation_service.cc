#include "router/api/generation_service.h"

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
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
    explicit Sink(GenerateReactor* reactor) : reactor_(reactor) {}

    void Send(v1::GenerateResponse response) override {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (reactor_ == nullptr || finish_.has_value()) return;
        queue_.push_back(ToByteBuffer(response));
      }
      Pump();
    }

    void Close(absl::Status status) override {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (finish_.has_value()) return;
        finish_ = ToGrpcStatus(status);
      }
      Pump();
    }

    void OnWriteDone(bool ok) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        writing_ = false;
        queue_.pop_front();
        if (!ok) queue_.clear();  // the client is gone; OnCancel follows
      }
      Pump();
    }

    void Detach() {
      std::lock_guard<std::mutex> lock(mu_);
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
        std::lock_guard<std::mutex> lock(mu_);
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

    std::mutex mu_;
    GenerateReactor* reactor_;            // guarded by mu_; null after OnDone
    std::deque<grpc::ByteBuffer> queue_;  // guarded by mu_; front is being written
    bool writing_ = false;                // guarded by mu_
    std::optional<grpc::Status> finish_;  // guarded by mu_
    bool finish_sent_ = false;            // guarded by mu_
  };

  GenerateReactor() : sink_(std::make_shared<Sink>(this)) {}

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
    : tokenizer_(tokenizer), chat_template_(chat_template) {}

void GenerationService::SetReady(ServingLoop* loop, const RequestLimits& limits,
                                 const v1::ModelInfoResponse& info) {
  std::lock_guard<std::mutex> lock(mu_);
  loop_ = loop;
  limits_ = limits;
  info_ = info;
}

void GenerationService::SetUnavailable(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  loop_ = nullptr;
  unavailable_reason_ = reason;
}

absl::StatusOr<std::vector<int32_t>> GenerationService::RenderChat(
    const v1::ChatPrompt& chat) const {
  if (chat_template_ == nullptr) {
    return absl::InvalidArgumentError(
        "chat: this model has no chat template; send text or token_ids, or start the router "
        "with --chat_template=<name>");
  }
  std::vector<ChatMessage> messages;
  for (const v1::ChatMessage& m : chat.messages()) messages.push_back({m.role(), m.content()});
  absl::StatusOr<std::string> text = chat_template_->Render(messages, true);
  if (!text.ok()) return Annotate(text.status(), "chat.messages");
  return tokenizer_->Encode(std::string_view(*text),
                            EncodeOptions{.add_special = false, .parse_special = true});
}

absl::StatusOr<std::vector<int32_t>> GenerationService::PromptTokens(
    const v1::GenerateRequest& request) const {
  switch (request.prompt_case()) {
    case v1::GenerateRequest::kText: {
      absl::StatusOr<std::vector<int32_t>> ids =
          tokenizer_->Encode(std::string_view(request.text()), EncodeOptions{.add_special = true});
      if (!ids.ok()) return Annotate(ids.status(), "text");
      return ids;
    }
    case v1::GenerateRequest::kTokenIds:
      return std::vector<int32_t>(request.token_ids().ids().begin(),
                                  request.token_ids().ids().end());
    case v1::GenerateRequest::kChat:
      return RenderChat(request.chat());
    default:
      return absl::InvalidArgumentError("prompt is missing: set one of text, token_ids or chat");
  }
}

std::string GenerationService::NextRequestId() const {
  return absl::StrCat("req-", next_request_number_.fetch_add(1));
}

absl::StatusOr<GenerateJob> GenerationService::BuildJob(const grpc::ByteBuffer& raw,
                                                        grpc::CallbackServerContext* context,
                                                        const RequestLimits& limits) const {
  TPS_ASSIGN_OR_RETURN(std::string bytes, ToBytes(raw));
  TPS_RETURN_IF_ERROR(CheckUtf8Fields(*v1::GenerateRequest::descriptor(), bytes));
  v1::GenerateRequest request;
  if (!request.ParseFromString(bytes)) {
    return absl::InvalidArgumentError("request is not a valid tpserve.v1.GenerateRequest");
  }
  TPS_RETURN_IF_ERROR(ValidateGenerateRequest(request, limits));
  TPS_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, PromptTokens(request));
  TPS_ASSIGN_OR_RETURN(int32_t max_tokens,
                       ResolveMaxTokens(request, static_cast<int32_t>(prompt.size()), limits));
  GenerateJob job;
  job.request_id = request.request_id().empty() ? NextRequestId() : request.request_id();
  job.prompt = std::move(prompt);
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  job.sampling = SamplingFromRequest(request.sampling(), /*seed_if_unset=*/rng());
  job.priority = request.priority();
  job.deadline = DeadlineOf(*context);
  job.arrival = absl::Now();
  job.max_tokens = max_tokens;
  job.stop.assign(request.stop().begin(), request.stop().end());
  job.stop_token_ids.assign(request.stop_token_ids().begin(), request.stop_token_ids().end());
  job.ignore_eos = request.ignore_eos();
  return job;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerationService::Generate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  auto* reactor = new GenerateReactor();
  ServingLoop* loop;
  RequestLimits limits;
  std::string unavailable;
  {
    std::lock_guard<std::mutex> lock(mu_);
    loop = loop_;
    limits = limits_;
    unavailable = unavailable_reason_;
  }
  if (loop == nullptr) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, unavailable));
    return reactor;
  }
  absl::StatusOr<GenerateJob> job = BuildJob(*request, context, limits);
  if (!job.ok()) {
    reactor->Finish(ToGrpcStatus(job.status()));
    return reactor;
  }
  job->sink = reactor->sink();
  reactor->Attach(loop, loop->Submit(*std::move(job)));
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
    std::vector<int32_t> ids;
    if (req.input_case() == v1::TokenizeRequest::kText) {
      TPS_ASSIGN_OR_RETURN(ids, tokenizer_->Encode(std::string_view(req.text()),
                                                   EncodeOptions{.add_special = true}));
    } else if (req.input_case() == v1::TokenizeRequest::kChat) {
      v1::GenerateRequest as_generate;
      *as_generate.mutable_chat() = req.chat();
      TPS_RETURN_IF_ERROR(ValidateGenerateRequest(
          as_generate,
          RequestLimits{.vocab_size = tokenizer_->vocab_size(), .context_length = 1 << 30}));
      TPS_ASSIGN_OR_RETURN(ids, RenderChat(req.chat()));
    } else {
      return absl::InvalidArgumentError("input is missing: set text or chat");
    }
    v1::TokenizeResponse out;
    for (int32_t id : ids) {
      out.add_token_ids(id);
      out.add_tokens(tokenizer_->TokenText(id));
    }
    *response = ToByteBuffer(out);
    return absl::OkStatus();
  };
  reactor->Finish(ToGrpcStatus(run()));
  return reactor;
}

grpc::Status GenerationService::ModelInfo(grpc::ServerContext*, const v1::ModelInfoRequest*,
                                          v1::ModelInfoResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (loop_ == nullptr) return grpc::Status(grpc::StatusCode::UNAVAILABLE, unavailable_reason_);
  *response = info_;
  return grpc::Status::OK;
}

}  // namespace tpserve
