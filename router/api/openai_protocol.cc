#include "router/api/openai_protocol.h"

#include <cctype>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace tpserve::openai {
namespace {

absl::Status Invalid(absl::string_view param, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(param, " ", what));
}

const char* TypeName(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "boolean";
  if (v.is_number_integer()) return "integer";
  if (v.is_number()) return "number";
  if (v.is_string()) return "string";
  if (v.is_array()) return "array";
  return "object";
}

absl::Status WrongType(absl::string_view param, absl::string_view want, const json& got) {
  return Invalid(param, absl::StrCat("must be ", want, ", got ", TypeName(got)));
}

// The value of `key`, or null when absent (OpenAI treats null as unset).
const json* Field(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::optional<double>> GetNumber(const json& body, const char* key) {
  const json* v = Field(body, key);
  if (v == nullptr) return std::optional<double>();
  if (!v->is_number()) return WrongType(key, "a number", *v);
  return std::optional<double>(v->get<double>());
}

absl::StatusOr<std::optional<int64_t>> GetInt(const json& body, const char* key, int64_t lo,
                                              int64_t hi) {
  const json* v = Field(body, key);
  if (v == nullptr) return std::optional<int64_t>();
  if (!v->is_number_integer()) return WrongType(key, "an integer", *v);
  if (v->is_number_unsigned() &&
      v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Invalid(key, absl::StrCat("must be in [", lo, ", ", hi, "], got ", v->dump()));
  }
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi) {
    return Invalid(key, absl::StrCat("must be in [", lo, ", ", hi, "], got ", x));
  }
  return std::optional<int64_t>(x);
}

absl::StatusOr<std::optional<bool>> GetBool(const json& body, const char* key) {
  const json* v = Field(body, key);
  if (v == nullptr) return std::optional<bool>();
  if (!v->is_boolean()) return WrongType(key, "a boolean", *v);
  return std::optional<bool>(v->get<bool>());
}

absl::StatusOr<std::optional<std::string>> GetString(const json& body, const char* key) {
  const json* v = Field(body, key);
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string()) return WrongType(key, "a string", *v);
  return std::optional<std::string>(v->get<std::string>());
}

absl::StatusOr<json> ParseObject(absl::string_view body) {
  json parsed = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Invalid("body", "is not valid JSON");
  if (!parsed.is_object()) return WrongType("body", "a JSON object", parsed);
  return parsed;
}

// Float fields of SamplingParameters: NaN and infinities are caught by the
// shared validator; doubles beyond float range become infinities there.
template <typename Setter>
absl::Status SetFloat(const json& body, const char* key, Setter set) {
  TPS_ASSIGN_OR_RETURN(std::optional<double> v, GetNumber(body, key));
  if (v.has_value()) set(static_cast<float>(*v));
  return absl::OkStatus();
}

// "content": a string, or OpenAI's content parts [{"type": "text", "text": ...}].
absl::StatusOr<std::string> MessageContent(const json& message, const std::string& path) {
  auto it = message.find("content");
  if (it == message.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) return WrongType(path + ".content", "a string or an array of parts", *it);
  std::string out;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& part = (*it)[i];
    const std::string part_path = absl::StrCat(path, ".content[", i, "]");
    if (!part.is_object()) return WrongType(part_path, "an object", part);
    auto type = part.find("type");
    auto text = part.find("text");
    if (type == part.end() || !type->is_string() || type->get<std::string>() != "text") {
      return Invalid(part_path + ".type", "must be \"text\" (only text parts are supported)");
    }
    if (text == part.end() || !text->is_string()) {
      return Invalid(part_path + ".text", "must be a string");
    }
    out += text->get<std::string>();
  }
  return out;
}

absl::StatusOr<v1::ChatPrompt> ParseMessages(const json& body) {
  auto it = body.find("messages");
  if (it == body.end() || it->is_null()) return Invalid("messages", "is required");
  if (!it->is_array()) return WrongType("messages", "an array of messages", *it);
  v1::ChatPrompt chat;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string path = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return WrongType(path, "an object", m);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      return Invalid(path + ".role", "must be a string (\"system\", \"user\" or \"assistant\")");
    }
    v1::ChatMessage* out = chat.add_messages();
    // OpenAI's newer name for the system role.
    out->set_role(role->get<std::string>() == "developer" ? "system" : role->get<std::string>());
    TPS_ASSIGN_OR_RETURN(*out->mutable_content(), MessageContent(m, path));
  }
  return chat;
}

bool IsTokenArray(const json& v) {
  if (!v.is_array() || v.empty()) return false;
  for (const json& x : v) {
    if (!x.is_number_integer()) return false;
  }
  return true;
}

absl::StatusOr<v1::TokenIdsPrompt> TokenIds(const json& v, const std::string& path) {
  v1::TokenIdsPrompt ids;
  for (size_t i = 0; i < v.size(); ++i) {
    const json& x = v[i];
    if (!x.is_number_integer() || x.get<int64_t>() < 0 ||
        x.get<int64_t>() > std::numeric_limits<int32_t>::max() ||
        (x.is_number_unsigned() &&
         x.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))) {
      return Invalid(absl::StrCat(path, "[", i, "]"),
                     absl::StrCat("must be a token id (a non-negative integer), got ", x.dump()));
    }
    ids.add_ids(static_cast<int32_t>(x.get<int64_t>()));
  }
  return ids;
}

// "prompt": a string, a list of strings, a list of token ids, or a list of
// token-id lists. One GenerateRequest (prompt only) per prompt.
absl::StatusOr<std::vector<v1::GenerateRequest>> ParsePrompts(const json& body,
                                                              const ParseOptions& options) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) return Invalid("prompt", "is required");
  std::vector<v1::GenerateRequest> out;
  const json& p = *it;
  if (p.is_string()) {
    out.emplace_back().set_text(p.get<std::string>());
    return out;
  }
  if (!p.is_array() || p.empty()) {
    return Invalid("prompt",
                   absl::StrCat("must be a string, a non-empty array of strings, of token ids, or "
                                "of token-id arrays, got ",
                                p.is_array() ? "an empty array" : TypeName(p)));
  }
  if (IsTokenArray(p)) {
    TPS_ASSIGN_OR_RETURN(*out.emplace_back().mutable_token_ids(), TokenIds(p, "prompt"));
    return out;
  }
  if (static_cast<int>(p.size()) > options.max_prompts) {
    return Invalid("prompt", absl::StrCat("has ", p.size(), " prompts; at most ",
                                          options.max_prompts, " are allowed per request"));
  }
  for (size_t i = 0; i < p.size(); ++i) {
    const std::string path = absl::StrCat("prompt[", i, "]");
    if (p[i].is_string()) {
      out.emplace_back().set_text(p[i].get<std::string>());
    } else if (p[i].is_array()) {
      TPS_ASSIGN_OR_RETURN(*out.emplace_back().mutable_token_ids(), TokenIds(p[i], path));
    } else {
      return WrongType(path, "a string or an array of token ids", p[i]);
    }
  }
  return out;
}

// Everything but the prompt, shared by both endpoints, into `r` (the prompt
// template copied into every prompt afterwards).
absl::Status ParseCommon(const json& body, Endpoint endpoint, ParsedRequest& r,
                         v1::GenerateRequest& common, const ParseOptions& options) {
  TPS_ASSIGN_OR_RETURN(std::optional<std::string> model, GetString(body, "model"));
  r.model = model.value_or("");
  TPS_ASSIGN_OR_RETURN(std::optional<std::string> user, GetString(body, "user"));
  (void)user;  // accepted for compatibility; not used for scheduling
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  TPS_ASSIGN_OR_RETURN(std::optional<int64_t> max_tokens,
                       GetInt(body, "max_tokens", std::numeric_limits<int32_t>::min(), kInt32Max));
  TPS_ASSIGN_OR_RETURN(
      std::optional<int64_t> max_completion_tokens,
      GetInt(body, "max_completion_tokens", std::numeric_limits<int32_t>::min(), kInt32Max));
  if (max_completion_tokens.has_value()) max_tokens = max_completion_tokens;
  if (max_tokens.has_value()) common.set_max_tokens(static_cast<int32_t>(*max_tokens));
  TPS_ASSIGN_OR_RETURN(std::optional<int64_t> n, GetInt(body, "n", 1, options.max_n));
  r.n = static_cast<int>(n.value_or(1));
  TPS_ASSIGN_OR_RETURN(std::optional<bool> stream, GetBool(body, "stream"));
  r.stream = stream.value_or(false);
  if (const json* so = Field(body, "stream_options"); so != nullptr) {
    if (!so->is_object()) return WrongType("stream_options", "an object", *so);
    TPS_ASSIGN_OR_RETURN(std::optional<bool> usage, GetBool(*so, "include_usage"));
    if (const json* u = Field(*so, "include_usage"); u != nullptr && !u->is_boolean()) {
      return WrongType("stream_options.include_usage", "a boolean", *u);
    }
    r.include_usage = usage.value_or(false);
  }

  v1::SamplingParameters& s = *common.mutable_sampling();
  TPS_RETURN_IF_ERROR(SetFloat(body, "temperature", [&](float v) { s.set_temperature(v); }));
  TPS_RETURN_IF_ERROR(SetFloat(body, "top_p", [&](float v) { s.set_top_p(v); }));
  TPS_RETURN_IF_ERROR(SetFloat(body, "min_p", [&](float v) { s.set_min_p(v); }));
  TPS_RETURN_IF_ERROR(
      SetFloat(body, "presence_penalty", [&](float v) { s.set_presence_penalty(v); }));
  TPS_RETURN_IF_ERROR(
      SetFloat(body, "frequency_penalty", [&](float v) { s.set_frequency_penalty(v); }));
  TPS_RETURN_IF_ERROR(
      SetFloat(body, "repetition_penalty", [&](float v) { s.set_repetition_penalty(v); }));
  TPS_ASSIGN_OR_RETURN(std::optional<int64_t> top_k, GetInt(body, "top_k", -1, kInt32Max));
  if (top_k.has_value()) s.set_top_k(*top_k == -1 ? 0 : static_cast<int32_t>(*top_k));  // vLLM: -1 = off
  TPS_ASSIGN_OR_RETURN(std::optional<int64_t> seed,
                       GetInt(body, "seed", std::numeric_limits<int64_t>::min(),
                              std::numeric_limits<int64_t>::max()));
  if (seed.has_value()) s.set_seed(static_cast<uint64_t>(*seed));

  if (endpoint == Endpoint::kChat) {
    TPS_ASSIGN_OR_RETURN(std::optional<bool> logprobs, GetBool(body, "logprobs"));
    TPS_ASSIGN_OR_RETURN(std::optional<int64_t> top, GetInt(body, "top_logprobs", 0, 20));
    r.logprobs = logprobs.value_or(false);
    if (top.value_or(0) > 0 && !r.logprobs) {
      return Invalid("top_logprobs", "needs \"logprobs\": true");
    }
    s.set_top_logprobs(static_cast<int32_t>(top.value_or(0)));
  } else {
    // Completions: "logprobs" is the number of alternatives (0 to 5 in
    // OpenAI's API; up to the router's limit here).
    TPS_ASSIGN_OR_RETURN(std::optional<int64_t> top, GetInt(body, "logprobs", 0, 20));
    r.logprobs = top.has_value();
    s.set_top_logprobs(static_cast<int32_t>(top.value_or(0)));
    TPS_ASSIGN_OR_RETURN(std::optional<bool> echo, GetBool(body, "echo"));
    if (echo.value_or(false)) return Invalid("echo", "is not supported (must be false)");
    TPS_ASSIGN_OR_RETURN(std::optional<int64_t> best_of, GetInt(body, "best_of", 1, 1));
    (void)best_of;
    TPS_ASSIGN_OR_RETURN(std::optional<std::string> suffix, GetString(body, "suffix"));
    if (suffix.has_value() && !suffix->empty()) return Invalid("suffix", "is not supported");
  }
  s.set_logprobs(r.logprobs);

  if (const json* stop = Field(body, "stop"); stop != nullptr) {
    if (stop->is_string()) {
      common.add_stop(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (size_t i = 0; i < stop->size(); ++i) {
        if (!(*stop)[i].is_string()) {
          return WrongType(absl::StrCat("stop[", i, "]"), "a string", (*stop)[i]);
        }
        common.add_stop((*stop)[i].get<std::string>());
      }
    } else {
      return WrongType("stop", "a string or an array of strings", *stop);
    }
  }
  if (const json* ids = Field(body, "stop_token_ids"); ids != nullptr) {
    if (!ids->is_array()) return WrongType("stop_token_ids", "an array of token ids", *ids);
    TPS_ASSIGN_OR_RETURN(v1::TokenIdsPrompt parsed, TokenIds(*ids, "stop_token_ids"));
    common.mutable_stop_token_ids()->Assign(parsed.ids().begin(), parsed.ids().end());
  }
  TPS_ASSIGN_OR_RETURN(std::optional<bool> ignore_eos, GetBool(body, "ignore_eos"));
  common.set_ignore_eos(ignore_eos.value_or(false));
  // vLLM's priority: lower values are handled first; tpserve's is the reverse.
  TPS_ASSIGN_OR_RETURN(std::optional<int64_t> priority, GetInt(body, "priority", -1000, 1000));
  common.set_priority(-static_cast<int32_t>(priority.value_or(0)));
  return absl::OkStatus();
}

json LogprobEntry(const v1::TokenLogprob& t) {
  json bytes = json::array();
  for (unsigned char c : t.text()) bytes.push_back(static_cast<int>(c));
  return json{{"token", t.text()}, {"logprob", t.logprob()}, {"bytes", std::move(bytes)}};
}

// Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}.
json ChatLogprobs(const google::protobuf::RepeatedPtrField<v1::SampledLogprobs>& lps) {
  json content = json::array();
  for (const v1::SampledLogprobs& lp : lps) {
    json entry = LogprobEntry(lp.sampled());
    json top = json::array();
    for (const v1::TokenLogprob& t : lp.top()) top.push_back(LogprobEntry(t));
    entry["top_logprobs"] = std::move(top);
    content.push_back(std::move(entry));
  }
  return json{{"content", std::move(content)}};
}

// Completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"}.
json CompletionLogprobs(const google::protobuf::RepeatedPtrField<v1::SampledLogprobs>& lps,
                        int64_t offset) {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  for (const v1::SampledLogprobs& lp : lps) {
    tokens.push_back(lp.sampled().text());
    token_logprobs.push_back(lp.sampled().logprob());
    json alternatives = json::object();
    for (const v1::TokenLogprob& t : lp.top()) alternatives[t.text()] = t.logprob();
    top.push_back(std::move(alternatives));
    offsets.push_back(offset);
    offset += static_cast<int64_t>(lp.sampled().text().size());
  }
  return json{{"tokens", std::move(tokens)},
              {"token_logprobs", std::move(token_logprobs)},
              {"top_logprobs", std::move(top)},
              {"text_offset", std::move(offsets)}};
}

json FinishReason(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_LENGTH:
      return "length";
    default:
      return nullptr;
  }
}

json StopReason(const std::string& stop_reason, v1::FinishReason reason) {
  if (reason == v1::FINISH_REASON_UNSPECIFIED || stop_reason.empty()) return nullptr;
  return stop_reason;
}

const char* ObjectName(const ParsedRequest& r, bool chunk) {
  if (r.endpoint == Endpoint::kChat) return chunk ? "chat.completion.chunk" : "chat.completion";
  return "text_completion";
}

json Envelope(const ParsedRequest& r, const ResponseMeta& meta, bool chunk) {
  return json{{"id", meta.id},
              {"object", ObjectName(r, chunk)},
              {"created", meta.created},
              {"model", meta.model}};
}

}  // namespace

absl::StatusOr<ParsedRequest> ParseGenerateRequest(Endpoint endpoint, absl::string_view body,
                                                   const ParseOptions& options) {
  TPS_ASSIGN_OR_RETURN(json parsed, ParseObject(body));
  ParsedRequest r;
  r.endpoint = endpoint;
  v1::GenerateRequest common;
  TPS_RETURN_IF_ERROR(ParseCommon(parsed, endpoint, r, common, options));
  if (endpoint == Endpoint::kChat) {
    TPS_ASSIGN_OR_RETURN(*common.mutable_chat(), ParseMessages(parsed));
    r.prompts.push_back(std::move(common));
    return r;
  }
  TPS_ASSIGN_OR_RETURN(std::vector<v1::GenerateRequest> prompts, ParsePrompts(parsed, options));
  for (v1::GenerateRequest& p : prompts) {
    v1::GenerateRequest merged = common;
    merged.MergeFrom(p);
    r.prompts.push_back(std::move(merged));
  }
  return r;
}

absl::StatusOr<v1::TokenizeRequest> ParseTokenizeRequest(absl::string_view body) {
  TPS_ASSIGN_OR_RETURN(json parsed, ParseObject(body));
  TPS_ASSIGN_OR_RETURN(std::optional<std::string> model, GetString(parsed, "model"));
  (void)model;
  TPS_ASSIGN_OR_RETURN(std::optional<bool> gen, GetBool(parsed, "add_generation_prompt"));
  TPS_ASSIGN_OR_RETURN(std::optional<bool> special, GetBool(parsed, "add_special_tokens"));
  v1::TokenizeRequest out;
  const bool has_prompt = Field(parsed, "prompt") != nullptr;
  const bool has_messages = Field(parsed, "messages") != nullptr;
  if (has_prompt == has_messages) {
    return Invalid("prompt", "or messages: give exactly one of the two");
  }
  if (has_prompt) {
    TPS_ASSIGN_OR_RETURN(std::optional<std::string> prompt, GetString(parsed, "prompt"));
    if (!special.value_or(true)) {
      return Invalid("add_special_tokens", "must be true (prompts are tokenized as generation does)");
    }
    out.set_text(*prompt);
  } else {
    if (!gen.value_or(true)) {
      return Invalid("add_generation_prompt",
                     "must be true (messages are rendered as generation renders them)");
    }
    TPS_ASSIGN_OR_RETURN(*out.mutable_chat(), ParseMessages(parsed));
  }
  return out;
}

absl::StatusOr<std::vector<int32_t>> ParseDetokenizeRequest(absl::string_view body) {
  TPS_ASSIGN_OR_RETURN(json parsed, ParseObject(body));
  const json* tokens = Field(parsed, "tokens");
  if (tokens == nullptr) return Invalid("tokens", "is required");
  if (!tokens->is_array()) return WrongType("tokens", "an array of token ids", *tokens);
  TPS_ASSIGN_OR_RETURN(v1::TokenIdsPrompt ids, TokenIds(*tokens, "tokens"));
  return std::vector<int32_t>(ids.ids().begin(), ids.ids().end());
}

void ChoiceResult::Add(const v1::GenerateResponse& response) {
  text += response.text();
  logprobs.insert(logprobs.end(), response.logprobs().begin(), response.logprobs().end());
  if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
    finish_reason = response.finish_reason();
    stop_reason = response.stop_reason();
  }
  if (response.has_usage()) usage = response.usage();
}

json UsageJson(const std::vector<ChoiceResult>& choices, int n) {
  int64_t prompt = 0, completion = 0, cached = 0;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (n > 0 && i % n == 0) {
      prompt += choices[i].usage.prompt_tokens();
      cached += choices[i].usage.cached_tokens();
    }
    completion += choices[i].usage.completion_tokens();
  }
  return json{{"prompt_tokens", prompt},
              {"completion_tokens", completion},
              {"total_tokens", prompt + completion},
              {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

json CompletionResponse(const ParsedRequest& r, const ResponseMeta& meta,
                        const std::vector<ChoiceResult>& choices) {
  json out = Envelope(r, meta, /*chunk=*/false);
  json list = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    json choice = {{"index", i},
                   {"finish_reason", FinishReason(c.finish_reason)},
                   {"stop_reason", StopReason(c.stop_reason, c.finish_reason)}};
    google::protobuf::RepeatedPtrField<v1::SampledLogprobs> lps(c.logprobs.begin(),
                                                               c.logprobs.end());
    if (r.endpoint == Endpoint::kChat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
      choice["logprobs"] = r.logprobs ? ChatLogprobs(lps) : json(nullptr);
    } else {
      choice["text"] = c.text;
      choice["logprobs"] = r.logprobs ? CompletionLogprobs(lps, 0) : json(nullptr);
    }
    list.push_back(std::move(choice));
  }
  out["choices"] = std::move(list);
  out["usage"] = UsageJson(choices, r.n);
  return out;
}

json RoleChunk(const ParsedRequest& r, const ResponseMeta& meta, int index) {
  json out = Envelope(r, meta, /*chunk=*/true);
  out["choices"] = json::array({json{{"index", index},
                                     {"delta", {{"role", "assistant"}, {"content", ""}}},
                                     {"logprobs", nullptr},
                                     {"finish_reason", nullptr}}});
  if (r.include_usage) out["usage"] = nullptr;
  return out;
}

json StreamChunk(const ParsedRequest& r, const ResponseMeta& meta, int index,
                 const v1::GenerateResponse& response) {
  json out = Envelope(r, meta, /*chunk=*/true);
  json choice = {{"index", index},
                 {"finish_reason", FinishReason(response.finish_reason())},
                 {"stop_reason", StopReason(response.stop_reason(), response.finish_reason())}};
  if (r.endpoint == Endpoint::kChat) {
    choice["delta"] = json::object();
    if (!response.text().empty()) choice["delta"]["content"] = response.text();
    choice["logprobs"] = r.logprobs ? ChatLogprobs(response.logprobs()) : json(nullptr);
  } else {
    choice["text"] = response.text();
    choice["logprobs"] = r.logprobs ? CompletionLogprobs(response.logprobs(), 0) : json(nullptr);
  }
  out["choices"] = json::array({std::move(choice)});
  if (r.include_usage) out["usage"] = nullptr;
  return out;
}

json UsageChunk(const ParsedRequest& r, const ResponseMeta& meta, const json& usage) {
  json out = Envelope(r, meta, /*chunk=*/true);
  out["choices"] = json::array();
  out["usage"] = usage;
  return out;
}

json ApiError::Body() const {
  return json{{"error",
               {{"message", message},
                {"type", type},
                {"param", param.empty() ? json(nullptr) : json(param)},
                {"code", nullptr}}}};
}

int HttpStatus(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kCancelled:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

ApiError ToApiError(const absl::Status& status, Endpoint endpoint) {
  ApiError e;
  e.http_status = HttpStatus(status.code());
  e.message = std::string(status.message());
  switch (e.http_status) {
    case 400:
      e.type = "invalid_request_error";
      break;
    case 401:
      e.type = "authentication_error";
      break;
    case 404:
      e.type = "not_found_error";
      break;
    case 429:
      e.type = "rate_limit_error";
      break;
    case 503:
      e.type = "service_unavailable_error";
      break;
    case 504:
      e.type = "timeout_error";
      break;
    default:
      e.type = "server_error";
  }
  if (status.code() != absl::StatusCode::kInvalidArgument) return e;
  // The leading word names the field: rename proto paths to OpenAI's.
  const std::string prompt = endpoint == Endpoint::kChat ? "messages" : "prompt";
  const std::pair<std::string, std::string> kRenames[] = {
      {"sampling.", ""},      {"chat.messages", "messages"}, {"token_ids.ids", prompt},
      {"text", prompt},       {"prompt", prompt},            {"chat", "messages"},
      {"stop_token_ids", "stop_token_ids"},
  };
  size_t end = e.message.find_first_of(" :");
  std::string head = e.message.substr(0, end);
  for (const auto& [from, to] : kRenames) {
    if (absl::StartsWith(head, from)) {
      head = to + head.substr(from.size());
      break;
    }
  }
  if (end != std::string::npos) e.message = head + e.message.substr(end);
  // Only a field-like head is a parameter ("request is not ..." is not).
  bool field_like = !head.empty();
  for (char c : head) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '[' ||
          c == ']')) {
      field_like = false;
    }
  }
  if (field_like && head != "request") e.param = head;
  return e;
}

std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace tpserve::openai
