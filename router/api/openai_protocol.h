// OpenAI protocol: converts the OpenAI HTTP API's JSON (chat completions,
// completions, vLLM's tokenize/detokenize) into tpserve's own request
// objects, and tpserve's streamed responses back into OpenAI's response and
// chunk shapes. Pure functions, no I/O: the HTTP front end (http_front_end.h)
// reads bodies and writes responses; everything else (validation, tokenizing,
// scheduling) is the shared RequestPath, so an HTTP request and the same
// gRPC request take the same path.
//
// Errors: every rejection is an absl::Status whose message starts with the
// parameter it is about ("temperature must be a number, got string");
// ToApiError turns it, and the shared validator's messages (which name proto
// fields such as "sampling.top_p"), into OpenAI's error object with `param`
// set to the OpenAI name ("top_p").
//
//   TPS_ASSIGN_OR_RETURN(openai::ParsedRequest r,
//                        openai::ParseGenerateRequest(openai::Endpoint::kChat, body, options));
//   for (v1::GenerateRequest& prompt : r.prompts) ... RequestPath::BuildJob ...
//   json chunk = openai::StreamChunk(r, meta, choice_index, response);
#ifndef TPSERVE_ROUTER_API_OPENAI_PROTOCOL_H_
#define TPSERVE_ROUTER_API_OPENAI_PROTOCOL_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "proto/tpserve/v1/generation.pb.h"

namespace tpserve::openai {

using json = nlohmann::json;

enum class Endpoint { kChat, kCompletions };

struct ParseOptions {
  int max_n = 16;       // most choices per prompt
  int max_prompts = 16;  // most prompts in one /v1/completions request
};

// One /v1/chat/completions or /v1/completions request.
struct ParsedRequest {
  Endpoint endpoint = Endpoint::kChat;
  std::string model;  // as sent; "" when absent
  // One GenerateRequest per prompt (chat: exactly one). When the request has
  // a seed, choice i of a prompt samples with seed + i.
  std::vector<v1::GenerateRequest> prompts;
  int n = 1;  // choices per prompt
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // return logprobs in OpenAI's shape
};

// Parses and type-checks a request body. Range checks the shared validator
// also makes (top_p, penalties, roles, ...) are left to it.
[[nodiscard]] absl::StatusOr<ParsedRequest> ParseGenerateRequest(Endpoint endpoint,
                                                                 absl::string_view body,
                                                                 const ParseOptions& options);

// vLLM's POST /tokenize body ({"prompt": ...} or {"messages": [...]}).
[[nodiscard]] absl::StatusOr<v1::TokenizeRequest> ParseTokenizeRequest(absl::string_view body);
// vLLM's POST /detokenize body ({"tokens": [ids]}).
[[nodiscard]] absl::StatusOr<std::vector<int32_t>> ParseDetokenizeRequest(absl::string_view body);

// What every response and chunk of one request repeats.
struct ResponseMeta {
  std::string id;     // "chatcmpl-..." or "cmpl-..."
  int64_t created;    // Unix seconds
  std::string model;  // the served model's name
};

// One choice of a finished non-streaming request, accumulated from its
// GenerateResponses.
struct ChoiceResult {
  std::string text;
  std::vector<v1::SampledLogprobs> logprobs;
  v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
  std::string stop_reason;
  v1::Usage usage;
  void Add(const v1::GenerateResponse& response);
};

// OpenAI's usage object summed over choices: prompt tokens once per prompt
// (choice 0 of each), completion tokens of every choice.
json UsageJson(const std::vector<ChoiceResult>& choices, int n);

// The whole non-streaming response; choices[prompt * n + i].
json CompletionResponse(const ParsedRequest& request, const ResponseMeta& meta,
                        const std::vector<ChoiceResult>& choices);
// The first chunk of a chat choice: the assistant role, empty content.
json RoleChunk(const ParsedRequest& request, const ResponseMeta& meta, int index);
// One streamed GenerateResponse of choice `index`.
json StreamChunk(const ParsedRequest& request, const ResponseMeta& meta, int index,
                 const v1::GenerateResponse& response);
// The stream_options.include_usage chunk (no choices).
json UsageChunk(const ParsedRequest& request, const ResponseMeta& meta, const json& usage);

// OpenAI's error object and the HTTP status for a failed request.
struct ApiError {
  int http_status = 500;
  std::string message;
  std::string type;   // "invalid_request_error", "server_error", ...
  std::string param;  // the OpenAI parameter name; "" when none
  json Body() const;  // {"error": {"message", "type", "param", "code"}}
};

// 400 invalid, 401 unauthenticated, 404 not found, 429 queue full, 503 not
// ready, 504 deadline, 499-style cancellations as 400, 500 otherwise.
int HttpStatus(absl::StatusCode code);
// `status` as OpenAI's error; for `endpoint`, proto field paths in the
// message become OpenAI parameter names ("chat.messages[1].role" ->
// "messages[1].role", "sampling.top_p" -> "top_p", "text" -> "prompt").
ApiError ToApiError(const absl::Status& status, Endpoint endpoint);

// Serializes for the wire; invalid UTF-8 (never produced here) is replaced.
std::string Dump(const json& value);

}  // namespace tpserve::openai

#endif  // TPSERVE_ROUTER_API_OPENAI_PROTOCOL_H_
