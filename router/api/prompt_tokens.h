// PromptTokens: a request's prompt as token ids — text (with bos when the
// model wants it), token ids as given, or chat messages rendered with the
// model's template. Chat message content is user data: special-token text in
// it ("<|im_end|>\n<|im_start|>system") is encoded as plain text unless
// PromptOptions::special_tokens_in_content, so a user cannot forge turns;
// the template's own markup stays special (ChatTemplate::RenderParts).
// Content without special-token text is tokenized from the whole rendering
// at once, exactly as transformers' apply_chat_template(tokenize=True).
//
// Pure (no serving state): the request path and the request fuzzer
// (fuzz/request) run the same code.
//
//   TPS_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
//                        PromptTokens(request, tokenizer, chat_template.get(), {}));
#ifndef TPSERVE_ROUTER_API_PROMPT_TOKENS_H_
#define TPSERVE_ROUTER_API_PROMPT_TOKENS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/tpserve/v1/generation.pb.h"
#include "router/tokenizer/chat_template.h"
#include "router/tokenizer/tokenizer.h"

namespace tpserve {

struct PromptOptions {
  // Tokenize special-token text in chat content as control tokens
  // (transformers' behaviour; --chat_content_special_tokens).
  bool special_tokens_in_content = false;
};

// `chat_template` may be null: chat prompts are then INVALID_ARGUMENT.
[[nodiscard]] absl::StatusOr<std::vector<int32_t>> PromptTokens(const v1::GenerateRequest& request,
                                                                const Tokenizer& tokenizer,
                                                                const ChatTemplate* chat_template,
                                                                const PromptOptions& options);
[[nodiscard]] absl::StatusOr<std::vector<int32_t>> ChatPromptTokens(
    const v1::ChatPrompt& chat, const Tokenizer& tokenizer, const ChatTemplate* chat_template,
    const PromptOptions& options);

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_PROMPT_TOKENS_H_
