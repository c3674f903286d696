// Request validation for the public Generation API. Every rejection is
// INVALID_ARGUMENT with a message that names the offending field and says what
// is allowed, e.g. "sampling.top_p must be in (0, 1], got 1.5". Validation
// runs on the router before anything is queued, so an invalid request never
// reaches a worker.
//
//   RequestLimits limits{.vocab_size = 49152, .context_length = 8192};
//   TPS_RETURN_IF_ERROR(CheckUtf8Fields(*GenerateRequest::descriptor(), wire_bytes));
//   TPS_RETURN_IF_ERROR(ValidateGenerateRequest(request, limits));
//   ... tokenize ...
//   TPS_ASSIGN_OR_RETURN(int32_t max_tokens, ResolveMaxTokens(request, prompt_len, limits));
#ifndef TPSERVE_ROUTER_API_REQUEST_VALIDATION_H_
#define TPSERVE_ROUTER_API_REQUEST_VALIDATION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "proto/tpserve/v1/generation.pb.h"

namespace tpserve {

struct RequestLimits {
  int32_t vocab_size = 0;
  int32_t context_length = 0;
  int32_t default_max_tokens = 256;
  int32_t max_stop_strings = 8;
  int32_t max_stop_string_bytes = 256;
  int32_t max_stop_token_ids = 32;
  int32_t max_top_logprobs = 20;
  int32_t max_request_id_bytes = 128;
  int32_t max_chat_messages = 1024;
  int32_t max_priority = 1000;  // |priority| <= this
};

// True when `s` is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF).
bool IsValidUtf8(absl::string_view s);

// Walks the serialized message `wire` (of type `type`) and checks every string
// field, nested ones included, for valid UTF-8 — before the generated parser,
// which would reject the whole message without naming the field. Returns
// INVALID_ARGUMENT naming the field path (e.g. "chat.messages[1].content") or
// "request" when the bytes are not a parseable message.
[[nodiscard]] absl::Status CheckUtf8Fields(const google::protobuf::Descriptor& type,
                                           absl::string_view wire);

// Checks everything that does not need the tokenizer.
[[nodiscard]] absl::Status ValidateGenerateRequest(const tpserve::v1::GenerateRequest& request,
                                                   const RequestLimits& limits);

// Checks the prompt length against the context and returns the effective
// max_tokens (the request's, or the default capped by the remaining context).
[[nodiscard]] absl::StatusOr<int32_t> ResolveMaxTokens(const tpserve::v1::GenerateRequest& request,
                                                       int32_t prompt_tokens,
                                                       const RequestLimits& limits);

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_REQUEST_VALIDATION_H_
