#include "router/api/request_path.h"

#include <random>
#include <string_view>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "proto/convert/sampling_convert.h"
#include "router/api/prompt_tokens.h"

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
  return ChatPromptTokens(
      chat, *tokenizer_, chat_template_,
      PromptOptions{.special_tokens_in_content = special_tokens_in_content_.load()});
}

absl::StatusOr<std::vector<int32_t>> RequestPath::PromptTokens(
    const v1::GenerateRequest& request) const {
  return tpserve::PromptTokens(
      request, *tokenizer_, chat_template_,
      PromptOptions{.special_tokens_in_content = special_tokens_in_content_.load()});
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
