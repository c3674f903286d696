#include "router/api/request_validation.h"

#include <cmath>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/unknown_field_set.h"

namespace tpserve {
namespace {

using ::tpserve::v1::GenerateRequest;
using ::tpserve::v1::SamplingParameters;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", what));
}

absl::Status CheckSet(const google::protobuf::Descriptor& type,
                      const google::protobuf::UnknownFieldSet& set, const std::string& prefix,
                      int depth) {
  if (depth > 16) return absl::InvalidArgumentError("request nests messages too deeply");
  std::map<int, int> seen;  // field number -> occurrences so far (repeated index)
  for (int i = 0; i < set.field_count(); ++i) {
    const google::protobuf::UnknownField& f = set.field(i);
    if (f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) continue;
    const google::protobuf::FieldDescriptor* fd = type.FindFieldByNumber(f.number());
    if (fd == nullptr) continue;
    int index = seen[f.number()]++;
    std::string path = absl::StrCat(prefix, fd->name());
    if (fd->is_repeated()) absl::StrAppend(&path, "[", index, "]");
    if (fd->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
      if (!IsValidUtf8(f.length_delimited())) {
        return Invalid(path, "is not valid UTF-8");
      }
    } else if (fd->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
      google::protobuf::UnknownFieldSet nested;
      const std::string& bytes = f.length_delimited();
      if (!nested.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
        return Invalid(path, "is not a parseable message");
      }
      absl::Status s = CheckSet(*fd->message_type(), nested, path + ".", depth + 1);
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSampling(const SamplingParameters& s, const RequestLimits& limits) {
  auto finite = [](float v) { return std::isfinite(v); };
  if (s.has_temperature() && (!finite(s.temperature()) || s.temperature() < 0.0f)) {
    return Invalid("sampling.temperature",
                   absl::StrCat("must be >= 0 (0 = greedy), got ", s.temperature()));
  }
  if (s.has_top_k() && s.top_k() < 0) {
    return Invalid("sampling.top_k", absl::StrCat("must be >= 0 (0 = off), got ", s.top_k()));
  }
  if (s.has_top_p() && (!finite(s.top_p()) || s.top_p() <= 0.0f || s.top_p() > 1.0f)) {
    return Invalid("sampling.top_p", absl::StrCat("must be in (0, 1], got ", s.top_p()));
  }
  if (s.has_min_p() && (!finite(s.min_p()) || s.min_p() < 0.0f || s.min_p() > 1.0f)) {
    return Invalid("sampling.min_p", absl::StrCat("must be in [0, 1], got ", s.min_p()));
  }
  if (s.has_repetition_penalty() &&
      (!finite(s.repetition_penalty()) || s.repetition_penalty() <= 0.0f)) {
    return Invalid("sampling.repetition_penalty",
                   absl::StrCat("must be > 0 (1 = off), got ", s.repetition_penalty()));
  }
  if (s.has_presence_penalty() &&
      (!finite(s.presence_penalty()) || std::fabs(s.presence_penalty()) > 2.0f)) {
    return Invalid("sampling.presence_penalty",
                   absl::StrCat("must be in [-2, 2], got ", s.presence_penalty()));
  }
  if (s.has_frequency_penalty() &&
      (!finite(s.frequency_penalty()) || std::fabs(s.frequency_penalty()) > 2.0f)) {
    return Invalid("sampling.frequency_penalty",
                   absl::StrCat("must be in [-2, 2], got ", s.frequency_penalty()));
  }
  if (s.top_logprobs() < 0 || s.top_logprobs() > limits.max_top_logprobs) {
    return Invalid("sampling.top_logprobs", absl::StrCat("must be in [0, ", limits.max_top_logprobs,
                                                         "], got ", s.top_logprobs()));
  }
  return absl::OkStatus();
}

}  // namespace

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

absl::Status CheckUtf8Fields(const google::protobuf::Descriptor& type, absl::string_view wire) {
  google::protobuf::UnknownFieldSet set;
  if (!set.ParseFromArray(wire.data(), static_cast<int>(wire.size()))) {
    return absl::InvalidArgumentError("request is not a parseable protobuf message");
  }
  return CheckSet(type, set, "", 0);
}

absl::Status ValidateGenerateRequest(const GenerateRequest& request, const RequestLimits& limits) {
  if (static_cast<int>(request.request_id().size()) > limits.max_request_id_bytes) {
    return Invalid("request_id", absl::StrCat("must be at most ", limits.max_request_id_bytes,
                                              " bytes, got ", request.request_id().size()));
  }
  switch (request.prompt_case()) {
    case GenerateRequest::PROMPT_NOT_SET:
      return Invalid("prompt", "is missing: set one of text, token_ids or chat");
    case GenerateRequest::kText:
      if (request.text().empty()) return Invalid("text", "(the prompt) must not be empty");
      break;
    case GenerateRequest::kTokenIds: {
      const auto& ids = request.token_ids().ids();
      if (ids.empty()) return Invalid("token_ids.ids", "(the prompt) must not be empty");
      for (int i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= limits.vocab_size) {
          return Invalid(absl::StrCat("token_ids.ids[", i, "]"),
                         absl::StrCat("must be in [0, ", limits.vocab_size, "), got ", ids[i]));
        }
      }
      break;
    }
    case GenerateRequest::kChat: {
      const auto& msgs = request.chat().messages();
      if (msgs.empty()) return Invalid("chat.messages", "(the prompt) must not be empty");
      if (msgs.size() > limits.max_chat_messages) {
        return Invalid("chat.messages", absl::StrCat("must have at most ", limits.max_chat_messages,
                                                     " entries, got ", msgs.size()));
      }
      for (int i = 0; i < msgs.size(); ++i) {
        const std::string& role = msgs[i].role();
        if (role != "system" && role != "user" && role != "assistant") {
          return Invalid(
              absl::StrCat("chat.messages[", i, "].role"),
              absl::StrCat("must be \"system\", \"user\" or \"assistant\", got \"", role, "\""));
        }
      }
      break;
    }
  }
  if (request.has_max_tokens()) {
    if (request.max_tokens() <= 0) {
      return Invalid("max_tokens", absl::StrCat("must be >= 1, got ", request.max_tokens()));
    }
    if (request.max_tokens() > limits.context_length) {
      return Invalid("max_tokens",
                     absl::StrCat("must be at most the context length (", limits.context_length,
                                  "), got ", request.max_tokens()));
    }
  }
  absl::Status s = ValidateSampling(request.sampling(), limits);
  if (!s.ok()) return s;
  if (request.stop_size() > limits.max_stop_strings) {
    return Invalid("stop", absl::StrCat("has ", request.stop_size(), " strings; at most ",
                                        limits.max_stop_strings, " are allowed"));
  }
  for (int i = 0; i < request.stop_size(); ++i) {
    size_t len = request.stop(i).size();
    if (len == 0 || static_cast<int>(len) > limits.max_stop_string_bytes) {
      return Invalid(
          absl::StrCat("stop[", i, "]"),
          absl::StrCat("must be 1 to ", limits.max_stop_string_bytes, " bytes, got ", len));
    }
  }
  if (request.stop_token_ids_size() > limits.max_stop_token_ids) {
    return Invalid("stop_token_ids",
                   absl::StrCat("has ", request.stop_token_ids_size(), " ids; at most ",
                                limits.max_stop_token_ids, " are allowed"));
  }
  for (int i = 0; i < request.stop_token_ids_size(); ++i) {
    int32_t id = request.stop_token_ids(i);
    if (id < 0 || id >= limits.vocab_size) {
      return Invalid(absl::StrCat("stop_token_ids[", i, "]"),
                     absl::StrCat("must be in [0, ", limits.vocab_size, "), got ", id));
    }
  }
  if (request.priority() < -limits.max_priority || request.priority() > limits.max_priority) {
    return Invalid("priority", absl::StrCat("must be in [", -limits.max_priority, ", ",
                                            limits.max_priority, "], got ", request.priority()));
  }
  return absl::OkStatus();
}

absl::StatusOr<int32_t> ResolveMaxTokens(const GenerateRequest& request, int32_t prompt_tokens,
                                         const RequestLimits& limits) {
  if (prompt_tokens <= 0) return Invalid("prompt", "encodes to zero tokens");
  if (prompt_tokens >= limits.context_length) {
    return Invalid("prompt", absl::StrCat("has ", prompt_tokens,
                                          " tokens; it must be shorter than the context length (",
                                          limits.context_length, ")"));
  }
  const int32_t room = limits.context_length - prompt_tokens;
  if (!request.has_max_tokens()) return std::min(limits.default_max_tokens, room);
  if (request.max_tokens() > room) {
    return Invalid("max_tokens", absl::StrCat(request.max_tokens(), " plus the prompt's ",
                                              prompt_tokens, " tokens exceeds the context length (",
                                              limits.context_length, "); use at most ", room));
  }
  return request.max_tokens();
}

}  // namespace tpserve
