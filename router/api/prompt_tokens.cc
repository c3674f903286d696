#include "router/api/prompt_tokens.h"

#include <string>
#include <string_view>

#include "common/status.h"

namespace tpserve {

absl::StatusOr<std::vector<int32_t>> ChatPromptTokens(const v1::ChatPrompt& chat,
                                                      const Tokenizer& tokenizer,
                                                      const ChatTemplate* chat_template,
                                                      const PromptOptions& options) {
  if (chat_template == nullptr) {
    return absl::InvalidArgumentError(
        "chat: this model has no chat template; send text or token_ids, or start the router "
        "with --chat_template=<name>");
  }
  std::vector<ChatMessage> messages;
  bool content_has_special = false;
  for (const v1::ChatMessage& m : chat.messages()) {
    messages.push_back({m.role(), m.content()});
    content_has_special = content_has_special || tokenizer.ContainsSpecial(m.content());
  }
  if (!content_has_special || options.special_tokens_in_content) {
    // The common case: the whole rendering tokenized at once, exactly as
    // transformers' apply_chat_template(tokenize=True) does.
    absl::StatusOr<std::string> text = chat_template->Render(messages, true);
    if (!text.ok()) return Annotate(text.status(), "chat.messages");
    return tokenizer.Encode(std::string_view(*text),
                            EncodeOptions{.add_special = false, .parse_special = true});
  }
  // Message content is user data: special-token text in it ("<|im_end|>")
  // is encoded as plain text, so a user cannot forge turns; the template's
  // own markup stays special.
  absl::StatusOr<std::vector<ChatTemplate::Part>> parts =
      chat_template->RenderParts(messages, true);
  if (!parts.ok()) return Annotate(parts.status(), "chat.messages");
  std::vector<int32_t> ids;
  for (const ChatTemplate::Part& part : *parts) {
    TPS_ASSIGN_OR_RETURN(
        std::vector<int32_t> piece,
        tokenizer.Encode(std::string_view(part.text),
                         EncodeOptions{.add_special = false, .parse_special = !part.content}));
    ids.insert(ids.end(), piece.begin(), piece.end());
  }
  return ids;
}

absl::StatusOr<std::vector<int32_t>> PromptTokens(const v1::GenerateRequest& request,
                                                  const Tokenizer& tokenizer,
                                                  const ChatTemplate* chat_template,
                                                  const PromptOptions& options) {
  switch (request.prompt_case()) {
    case v1::GenerateRequest::kText: {
      absl::StatusOr<std::vector<int32_t>> ids =
          tokenizer.Encode(std::string_view(request.text()), EncodeOptions{.add_special = true});
      if (!ids.ok()) return Annotate(ids.status(), "text");
      return ids;
    }
    case v1::GenerateRequest::kTokenIds:
      return std::vector<int32_t>(request.token_ids().ids().begin(),
                                  request.token_ids().ids().end());
    case v1::GenerateRequest::kChat:
      return ChatPromptTokens(request.chat(), tokenizer, chat_template, options);
    default:
      return absl::InvalidArgumentError("prompt is missing: set one of text, token_ids or chat");
  }
}

}  // namespace tpserve
