#include "router/api/request_path.h"

#include <random>
#include <string_view>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "proto/convert/sampling_convert.h"

namespace tpserve {

RequestPath::RequestPath(const Tokenizer* tokenizer, const ChatTemplate* chat_template)
    : tokenizer_(tokenizer), chat_template_(chat_template) {}

void RequestPath::SetReady(ServingLoop* loop, const RequestLimits& limits,
                           const v1::ModelInfoResponse& info) {
  absl::MutexLock lock(&mu_);
  loop_ = loop;
  limits_ = limits;
  info_ = info;
}

void RequestPath::SetUnavailable(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  loop_ = nullptr;
  unavailable_reason_ = reason;
}

absl::StatusOr<RequestPath::Serving> RequestPath::Ready() const {
  absl::MutexLock lock(&mu_);
  if (loop_ == nullptr) return absl::UnavailableError(unavailable_reason_);
  return Serving{.loop = loop_, .limits = limits_, .info = info_};
}

absl::StatusOr<std::vector<int32_t>> RequestPath::RenderChat(const v1::ChatPrompt& chat) const {
  if (chat_template_ == nullptr) {
    return absl::InvalidArgumentError(
        "chat: this model has no chat template; send text or token_ids, or start the router "
        "with --chat_template=<name>");
  }
  std::vector<ChatMessage> messages;
  bool content_has_special = false;
  for (const v1::ChatMessage& m : chat.messages()) {
    messages.push_back({m.role(), m.content()});
    content_has_special = content_has_special || tokenizer_->ContainsSpecial(m.content());
  }
  if (!content_has_special || special_tokens_in_content_.load()) {
    // The common case: the whole rendering tokenized at once, exactly as
    // transformers' apply_chat_template(tokenize=True) does.
    absl::StatusOr<std::string> text = chat_template_->Render(messages, true);
    if (!text.ok()) return Annotate(text.status(), "chat.messages");
    return tokenizer_->Encode(std::string_view(*text),
                              EncodeOptions{.add_special = false, .parse_special = true});
  }
  // Message content is user data: special-token text in it ("<|im_end|>")
  // is encoded as plain text, so a user cannot forge turns; the template's
  // own markup stays special.
  absl::StatusOr<std::vector<ChatTemplate::Part>> parts =
      chat_template_->RenderParts(messages, true);
  if (!parts.ok()) return Annotate(parts.status(), "chat.messages");
  std::vector<int32_t> ids;
  for (const ChatTemplate::Part& part : *parts) {
    TPS_ASSIGN_OR_RETURN(
        std::vector<int32_t> piece,
        tokenizer_->Encode(std::string_view(part.text),
                           EncodeOptions{.add_special = false, .parse_special = !part.content}));
    ids.insert(ids.end(), piece.begin(), piece.end());
  }
  return ids;
}

absl::StatusOr<std::vector<int32_t>> RequestPath::PromptTokens(
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

std::string RequestPath::NextRequestId() const {
  return absl::StrCat("req-", next_request_number_.fetch_add(1));  // one atomic step: unique
}

absl::StatusOr<GenerateJob> RequestPath::BuildJob(const v1::GenerateRequest& request,
                                                  absl::Time deadline,
                                                  const RequestLimits& limits) const {
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
  job.deadline = deadline;
  job.arrival = absl::Now();
  job.max_tokens = max_tokens;
  job.stop.assign(request.stop().begin(), request.stop().end());
  job.stop_token_ids.assign(request.stop_token_ids().begin(), request.stop_token_ids().end());
  job.ignore_eos = request.ignore_eos();
  if (log_requests_.load()) {
    constexpr size_t kMaxLogged = 2000;
    absl::StatusOr<std::string> text = tokenizer_->Decode(job.prompt, /*skip_special=*/false);
    std::string shown = text.ok() ? *std::move(text) : "(undecodable)";
    if (shown.size() > kMaxLogged) shown = absl::StrCat(shown.substr(0, kMaxLogged), "...");
    Log(absl::StrCat("request ", job.request_id, ": ", job.prompt.size(),
                     " prompt tokens, max_tokens ", job.max_tokens, ": ", absl::CEscape(shown)));
  }
  return job;
}

absl::StatusOr<v1::TokenizeResponse> RequestPath::Tokenize(
    const v1::TokenizeRequest& request) const {
  std::vector<int32_t> ids;
  if (request.input_case() == v1::TokenizeRequest::kText) {
    TPS_ASSIGN_OR_RETURN(ids, tokenizer_->Encode(std::string_view(request.text()),
                                                 EncodeOptions{.add_special = true}));
  } else if (request.input_case() == v1::TokenizeRequest::kChat) {
    v1::GenerateRequest as_generate;
    *as_generate.mutable_chat() = request.chat();
    TPS_RETURN_IF_ERROR(ValidateGenerateRequest(
        as_generate,
        RequestLimits{.vocab_size = tokenizer_->vocab_size(), .context_length = 1 << 30}));
    TPS_ASSIGN_OR_RETURN(ids, RenderChat(request.chat()));
  } else {
    return absl::InvalidArgumentError("input is missing: set text or chat");
  }
  v1::TokenizeResponse out;
  for (int32_t id : ids) {
    out.add_token_ids(id);
    out.add_tokens(tokenizer_->TokenText(id));
  }
  return out;
}

absl::StatusOr<std::string> RequestPath::Detokenize(const std::vector<int32_t>& ids) const {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= tokenizer_->vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("tokens[", i, "] must be in [0, ",
                                                     tokenizer_->vocab_size(), "), got ", ids[i]));
    }
  }
  return tokenizer_->Decode(ids, /*skip_special=*/false);
}

}  // namespace tpserve
