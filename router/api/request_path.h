// RequestPath: the one way a public request becomes work for the serving
// loop. Both front ends (the gRPC Generation service and the OpenAI-compatible
// HTTP API) convert their wire format into a v1::GenerateRequest and hand it
// here; validation (request_validation.h), tokenization, chat-template
// rendering, defaults (max_tokens, seed) and the GenerateJob are built in one
// place, so the two front ends cannot drift apart.
//
// It also holds the router's readiness: until SetReady every call answers
// UNAVAILABLE with the reason (the workers are loading, a rank failed).
//
//   RequestPath path(&tokenizer, chat_template.get());
//   ... workers loaded ...
//   path.SetReady(&loop, limits, model_info);
//   TPS_ASSIGN_OR_RETURN(RequestPath::Serving s, path.Ready());
//   TPS_ASSIGN_OR_RETURN(GenerateJob job, path.BuildJob(request, deadline, s.limits));
//   job.sink = my_sink;
//   uint64_t id = s.loop->Submit(std::move(job));
#ifndef TPSERVE_ROUTER_API_REQUEST_PATH_H_
#define TPSERVE_ROUTER_API_REQUEST_PATH_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/tpserve/v1/generation.pb.h"
#include "router/api/request_validation.h"
#include "router/api/router_metrics.h"
#include "router/api/serving_loop.h"
#include "router/tokenizer/chat_template.h"
#include "router/tokenizer/tokenizer.h"

namespace tpserve {

class RequestPath {
 public:
  // What a ready router serves with; copied out so a caller never holds the
  // lock while it works.
  struct Serving {
    ServingLoop* loop = nullptr;
    RequestLimits limits;
    v1::ModelInfoResponse info;
  };

  // `tokenizer` and `chat_template` (may be null: chat prompts are then
  // INVALID_ARGUMENT) must outlive the path.
  RequestPath(const Tokenizer* tokenizer, const ChatTemplate* chat_template);

  // Starts serving with `loop` (which must outlive the path).
  void SetReady(ServingLoop* loop, const RequestLimits& limits, const v1::ModelInfoResponse& info);
  // Back to UNAVAILABLE with `reason` (a worker failed, shutting down).
  void SetUnavailable(const std::string& reason);
  // The serving state, or UNAVAILABLE naming why the router is not serving.
  [[nodiscard]] absl::StatusOr<Serving> Ready() const;

  // Validates `request` against `limits`, tokenizes its prompt and fills in
  // the defaults. The job's sink is left for the caller to set.
  // "req-N", unique across threads (ids for requests that bring none).
  std::string NextRequestId() const;

  [[nodiscard]] absl::StatusOr<GenerateJob> BuildJob(const v1::GenerateRequest& request,
                                                     absl::Time deadline,
                                                     const RequestLimits& limits) const;
  // Prompt token ids of a request (text with bos, ids as given, or chat
  // rendered with the template and the assistant prefix).
  [[nodiscard]] absl::StatusOr<std::vector<int32_t>> PromptTokens(
      const v1::GenerateRequest& request) const;
  // Tokenize exactly as Generate tokenizes the same prompt.
  [[nodiscard]] absl::StatusOr<v1::TokenizeResponse> Tokenize(
      const v1::TokenizeRequest& request) const;
  // Token ids back to text; ids outside the vocabulary are INVALID_ARGUMENT.
  [[nodiscard]] absl::StatusOr<std::string> Detokenize(const std::vector<int32_t>& ids) const;

  const Tokenizer& tokenizer() const { return *tokenizer_; }

  // Logs each built job's id and prompt text (truncated). Off by default:
  // prompts are user data and stay out of logs unless an operator asks
  // (--log_requests).
  void SetLogRequests(bool on) { log_requests_.store(on); }
  // Special-token text inside chat message content ("<|im_end|>") is
  // tokenized as plain text by default, so a user cannot forge turns; true
  // tokenizes it as control tokens, as transformers does
  // (--chat_content_special_tokens).
  void SetSpecialTokensInContent(bool on) { special_tokens_in_content_.store(on); }

  // Per-front-end request metrics; null (the default) counts nothing. Must
  // outlive the path.
  void SetFrontendMetrics(FrontendMetrics* metrics) { frontend_metrics_.store(metrics); }
  FrontendMetrics* frontend_metrics() const { return frontend_metrics_.load(); }

 private:
  absl::StatusOr<std::vector<int32_t>> RenderChat(const v1::ChatPrompt& chat) const;

  const Tokenizer* tokenizer_;
  const ChatTemplate* chat_template_;
  mutable std::atomic<uint64_t> next_request_number_{1};
  std::atomic<FrontendMetrics*> frontend_metrics_{nullptr};
  std::atomic<bool> log_requests_{false};
  std::atomic<bool> special_tokens_in_content_{false};

  mutable absl::Mutex mu_;
  ServingLoop* loop_ ABSL_GUARDED_BY(mu_) = nullptr;  // null until ready
  RequestLimits limits_ ABSL_GUARDED_BY(mu_);
  v1::ModelInfoResponse info_ ABSL_GUARDED_BY(mu_);
  std::string unavailable_reason_ ABSL_GUARDED_BY(mu_) =
      "the router is starting: waiting for the workers to load";
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_REQUEST_PATH_H_
