// ChatTemplate: renders {role, content} messages into the prompt text a chat
// model was trained on. The model's own Jinja template (tokenizer.chat_template)
// is recognised as one of the built-in formats — ChatML (with the model's
// default system prompt, e.g. SmolLM2's), Llama-3, Llama-2, Mistral — and
// rendered by C++ code that reproduces the template's output exactly. An
// unrecognised template is an error that names the built-ins, which a caller
// can then pick by name.
//
//   TPS_ASSIGN_OR_RETURN(ChatTemplate t,
//       ChatTemplate::FromModel(data.chat_template, bos_text, eos_text));
//   // or: ChatTemplate::FromName("chatml", "", "")
//   TPS_ASSIGN_OR_RETURN(std::string prompt,
//       t.Render({{"user", "Hi!"}}, /*add_generation_prompt=*/true));
//   // Encode `prompt` with add_special=false: the template already wrote any bos.
#ifndef TPSERVE_ROUTER_TOKENIZER_CHAT_TEMPLATE_H_
#define TPSERVE_ROUTER_TOKENIZER_CHAT_TEMPLATE_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tpserve {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (ChatML accepts any role)
  std::string content;
};

class ChatTemplate {
 public:
  enum class Format { kChatMl, kLlama3, kLlama2, kMistral };

  // Recognises `jinja_source` (the model's template). `bos_token`/`eos_token`
  // are the texts of the model's bos/eos tokens (the templates print them).
  // NotFound-style InvalidArgument for an empty or unknown template; the
  // message lists the names FromName accepts.
  static absl::StatusOr<ChatTemplate> FromModel(std::string_view jinja_source,
                                                std::string bos_token, std::string eos_token);

  // Built-in by name: "chatml", "llama3", "llama2", "mistral".
  static absl::StatusOr<ChatTemplate> FromName(std::string_view name, std::string bos_token,
                                               std::string eos_token);

  // Names FromName accepts, comma-separated (for error messages and --help).
  static std::string BuiltinNames();

  // Renders the conversation. InvalidArgument where the template would raise
  // (Llama-2/Mistral: roles must alternate user/assistant; invalid UTF-8).
  absl::StatusOr<std::string> Render(const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt) const;

  Format format() const { return format_; }
  // ChatML: the system prompt used when the conversation has none ("" = none).
  const std::string& default_system_prompt() const { return default_system_; }

 private:
  ChatTemplate(Format format, std::string bos, std::string eos, std::string default_system)
      : format_(format),
        bos_(std::move(bos)),
        eos_(std::move(eos)),
        default_system_(std::move(default_system)) {}

  Format format_;
  std::string bos_;
  std::string eos_;
  std::string default_system_;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_TOKENIZER_CHAT_TEMPLATE_H_
