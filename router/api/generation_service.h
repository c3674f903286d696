// GenerationService: the public tpserve.v1.Generation gRPC service.
//
// Generate and Tokenize take their request as raw bytes so that invalid UTF-8
// in a string field becomes INVALID_ARGUMENT naming the field (the generated
// parser would reject the whole message with a nameless INTERNAL error). Each
// request goes through the shared RequestPath (validation, tokenization or
// chat rendering, defaults; the HTTP front end uses the same one, reached
// through path()) and is handed to the ServingLoop; tokens stream
// back through a callback reactor with its own write queue, so a slow client
// never blocks the loop. Client cancellation or disconnect cancels the
// sequence; the call's deadline becomes the sequence's deadline.
//
// Until SetReady, Generate answers UNAVAILABLE (the workers are loading).
//
// With Options::api_keys every call must carry "authorization: Bearer <key>"
// (api_keys.h): Generate is admitted against the key's limits and charges its
// tokens as they stream; Tokenize and ModelInfo only authenticate. A client
// that stops reading (more than Options::stream_buffer_bytes of responses
// waiting behind gRPC flow control) has its request cancelled, its KV freed
// and its stream finished RESOURCE_EXHAUSTED.
//
//   GenerationService service(&tokenizer, &chat_template,
//                             {.api_keys = keys.get(), .stream_buffer_bytes = 16 << 10});
//   builder.RegisterService(&service);
//   ... workers loaded ...
//   service.SetReady(&loop, limits, model_info);
#ifndef TPSERVE_ROUTER_API_GENERATION_SERVICE_H_
#define TPSERVE_ROUTER_API_GENERATION_SERVICE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/tpserve/v1/generation.grpc.pb.h"
#include "router/api/api_keys.h"
#include "router/api/request_path.h"
#include "router/api/request_validation.h"
#include "router/api/serving_loop.h"
#include "router/tokenizer/chat_template.h"
#include "router/tokenizer/tokenizer.h"

namespace tpserve {

using GenerationServiceBase = v1::Generation::WithRawCallbackMethod_Generate<
    v1::Generation::WithRawCallbackMethod_Tokenize<v1::Generation::Service>>;

class GenerationService final : public GenerationServiceBase {
 public:
  struct Options {
    ApiKeys* api_keys = nullptr;  // null: no keys needed; must outlive the service
    // Responses a stream may hold waiting for a client that does not read
    // before the request is cancelled; <= 0: unbounded.
    int64_t stream_buffer_bytes = 16 << 10;
  };

  // `tokenizer` and `chat_template` (may be null: chat prompts are then
  // INVALID_ARGUMENT) must outlive the service.
  GenerationService(const Tokenizer* tokenizer, const ChatTemplate* chat_template, Options options);
  GenerationService(const Tokenizer* tokenizer, const ChatTemplate* chat_template)
      : GenerationService(tokenizer, chat_template, Options()) {}

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
  absl::StatusOr<std::vector<int32_t>> PromptTokens(const v1::GenerateRequest& request) const {
    return path_.PromptTokens(request);
  }

  // The request path and readiness this service shares with other front ends.
  RequestPath& path() { return path_; }

 private:
  absl::StatusOr<GenerateJob> BuildJob(const grpc::ByteBuffer& raw,
                                       grpc::CallbackServerContext* context,
                                       const RequestLimits& limits) const;

  // OK without keys; else the call's key must be known.
  absl::Status Authenticate(const grpc::ServerContextBase& context) const;

  RequestPath path_;
  const Options options_;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_GENERATION_SERVICE_H_
