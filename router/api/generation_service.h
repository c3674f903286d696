// GenerationService: the public tpserve.v1.Generation gRPC service.
//
// Generate and Tokenize take their request as raw bytes so that invalid UTF-8
// in a string field becomes INVALID_ARGUMENT naming the field (the generated
// parser would reject the whole message with a nameless INTERNAL error). Each
// request is validated, tokenized (text, token ids or chat messages rendered
// with the model's template) and handed to the ServingLoop; tokens stream
// back through a callback reactor with its own write queue, so a slow client
// never blocks the loop. Client cancellation or disconnect cancels the
// sequence; the call's deadline becomes the sequence's deadline.
//
// Until SetReady, Generate answers UNAVAILABLE (the workers are loading).
//
//   GenerationService service(&tokenizer, &chat_template);
//   builder.RegisterService(&service);
//   ... workers loaded ...
//   service.SetReady(&loop, limits, model_info);
#ifndef TPSERVE_ROUTER_API_GENERATION_SERVICE_H_
#define TPSERVE_ROUTER_API_GENERATION_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/tpserve/v1/generation.grpc.pb.h"
#include "router/api/request_validation.h"
#include "router/api/serving_loop.h"
#include "router/tokenizer/chat_template.h"
#include "router/tokenizer/tokenizer.h"

namespace tpserve {

using GenerationServiceBase = v1::Generation::WithRawCallbackMethod_Generate<
    v1::Generation::WithRawCallbackMethod_Tokenize<v1::Generation::Service>>;

class GenerationService final : public GenerationServiceBase {
 public:
  // `tokenizer` and `chat_template` (may be null: chat prompts are then
  // INVALID_ARGUMENT) must outlive the service.
  GenerationService(const Tokenizer* tokenizer, const ChatTemplate* chat_template);

  // Starts accepting Generate calls. `loop` must outlive the service.
  void SetReady(ServingLoop* loop, const RequestLimits& limits, const v1::ModelInfoResponse& info);
  // Back to UNAVAILABLE (e.g. a worker failed its health check).
  void SetUnavailable(const std::string& reason);

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::Status ModelInfo(grpc::ServerContext* context, const v1::ModelInfoRequest* request,
                         v1::ModelInfoResponse* response) override;

  // "req-N" for a request that names no id; distinct across concurrent
  // calls (one atomic increment gives N).
  std::string NextRequestId() const;

  // Prompt token ids for a request (exposed for tests).
  absl::StatusOr<std::vector<int32_t>> PromptTokens(const v1::GenerateRequest& request) const;

 private:
  absl::StatusOr<std::vector<int32_t>> RenderChat(const v1::ChatPrompt& chat) const;
  absl::StatusOr<GenerateJob> BuildJob(const grpc::ByteBuffer& raw,
                                       grpc::CallbackServerContext* context,
                                       const RequestLimits& limits) const;

  const Tokenizer* tokenizer_;
  const ChatTemplate* chat_template_;
  mutable std::atomic<uint64_t> next_request_number_{1};

  mutable std::mutex mu_;
  ServingLoop* loop_ = nullptr;  // guarded by mu_; null until ready
  RequestLimits limits_;         // guarded by mu_
  v1::ModelInfoResponse info_;   // guarded by mu_
  std::string unavailable_reason_ = "the router is starting: waiting for the workers to load";
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_GENERATION_SERVICE_H_
