// ChatTemplate: renders {role, content} messages into the prompt text a chat
// model was trained on, by running the model's own Jinja chat template
// (tokenizer.chat_template) through a small Jinja-subset interpreter
// (jinja/template.h) with Hugging Face's settings — so a template renders
// exactly as transformers' apply_chat_template renders it. Built-in templates
// (chatml, llama3, llama2, mistral) cover models without one, or with one
// that uses Jinja features outside the subset: such a template is an error
// whose message says to pick a built-in by name.
//
//   TPS_ASSIGN_OR_RETURN(ChatTemplate t,
//       ChatTemplate::FromModel(data.chat_template, bos_text, eos_text));
//   // or: ChatTemplate::FromName("chatml", "", "")
//   TPS_ASSIGN_OR_RETURN(std::string prompt,
//       t.Render({{"user", "Hi!"}}, /*add_generation_prompt=*/true));
//   // Encode `prompt` with add_special=false: the template already wrote any bos.
#ifndef TPSERVE_ROUTER_TOKENIZER_CHAT_TEMPLATE_H_
#define TPSERVE_ROUTER_TOKENIZER_CHAT_TEMPLATE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tpserve {

class Tokenizer;

namespace jinja {
class Template;
}

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

class ChatTemplate {
 public:
  // Parses the model's template. `bos_token` / `eos_token` are the texts of
  // the model's bos/eos tokens (templates print them). InvalidArgument for an
  // empty template, one outside the supported subset, one nested too deeply
  // (parser limits), or one that cannot render a 4-message conversation
  // within kProbeSteps / kProbeOutputBytes (the template comes from the model
  // file and is untrusted); the message names the problem and the built-ins
  // FromName accepts.
  static constexpr int64_t kProbeSteps = 200'000;
  static constexpr size_t kProbeOutputBytes = 1 << 20;
  // Step bound of one request's render (about 1 us a step): a template that
  // passed the probe but runs away on a larger conversation costs a request
  // a few seconds at most.
  static constexpr int64_t kRenderSteps = 4'000'000;
  static absl::StatusOr<ChatTemplate> FromModel(std::string_view jinja_source,
                                                std::string bos_token, std::string eos_token);

  // A built-in template by name: one of BuiltinNames().
  static absl::StatusOr<ChatTemplate> FromName(std::string_view name, std::string bos_token,
                                               std::string eos_token);

  // The template a server should use for `tok`'s model: the built-in
  // `override_name` when non-empty (e.g. from a --chat_template flag), else
  // the model's own (tok.data().chat_template), with the texts of its bos/eos.
  static absl::StatusOr<ChatTemplate> ForTokenizer(const Tokenizer& tok,
                                                   std::string_view override_name = "");

  // "chatml, llama3, llama2, mistral" (for error messages and --help).
  static std::string BuiltinNames();
  // The Jinja source of a built-in ("" for an unknown name).
  static std::string BuiltinSource(std::string_view name);

  // Renders the conversation. InvalidArgument when a message is not valid
  // UTF-8, or the template rejects the conversation (raise_exception, e.g.
  // Llama-2/Mistral: roles must alternate user/assistant).
  absl::StatusOr<std::string> Render(const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt) const;

  // One piece of a rendered conversation: text the template wrote, or a
  // message's content (user data).
  struct Part {
    std::string text;
    bool content = false;
  };
  // Renders like Render, split into template markup and message content, so
  // a caller can tokenize content without matching special-token text in it
  // (a user writing "<|im_end|>" must not end their turn). Each content is
  // wrapped in markers with a random nonce before rendering; the parts
  // joined always equal Render's text. InvalidArgument when the template
  // rewrites content beyond trimming it (cuts, reverses, changes case), as
  // the content could then not be told apart from markup.
  absl::StatusOr<std::vector<Part>> RenderParts(const std::vector<ChatMessage>& messages,
                                                bool add_generation_prompt) const;

  const std::string& name() const { return name_; }  // "model" or a built-in name

  // Lowers (or raises) the per-render step bound (kRenderSteps by default);
  // the fuzzer uses a small one to keep each input fast.
  void SetRenderStepLimit(int64_t steps) { render_steps_ = steps; }

 private:
  ChatTemplate(std::string name, std::shared_ptr<const jinja::Template> t, std::string bos,
               std::string eos)
      : name_(std::move(name)),
        template_(std::move(t)),
        bos_(std::move(bos)),
        eos_(std::move(eos)) {}

  std::string name_;
  std::shared_ptr<const jinja::Template> template_;
  std::string bos_;
  std::string eos_;
  int64_t render_steps_ = kRenderSteps;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_TOKENIZER_CHAT_TEMPLATE_H_
