#include "router/tokenizer/chat_template.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "router/tokenizer/jinja/template.h"
#include "router/tokenizer/tokenizer.h"
#include "router/tokenizer/unicode.h"

namespace tpserve {
namespace {

struct Builtin {
  const char* name;
  const char* source;
};

// Widely used formats, written as Jinja so they run through the same
// interpreter (and are checked against jinja2 in chat_template_test).
constexpr Builtin kBuiltins[] = {
    {"chatml",
     "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
     "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
     "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
    {"llama3",
     "{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + "
     "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' %}"
     "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
     "{% endfor %}{% if add_generation_prompt %}"
     "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"},
    {"llama2",
     "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
     "{% set system_message = messages[0]['content'] %}{% else %}"
     "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
     "{% for message in loop_messages %}"
     "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
     "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
     "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
     "{% else %}{% set content = message['content'] %}{% endif %}"
     "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
     "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}"
     "{% endif %}{% endfor %}"},
    {"mistral",
     "{{ bos_token }}{% for message in messages %}"
     "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
     "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' "
     "}}"
     "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
     "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
     "{% endif %}{% endfor %}"},
};

std::string Hint() {
  return absl::StrCat("; choose a built-in chat template by name instead (",
                      ChatTemplate::BuiltinNames(), ")");
}

// The variables a render sees (messages, add_generation_prompt, bos/eos...).
jinja::ValueDict Globals(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                         const std::string& bos, const std::string& eos) {
  jinja::ValueList list;
  for (const ChatMessage& m : messages) {
    list.push_back(
        jinja::Value::Dict({{"role", jinja::Value(m.role)}, {"content", jinja::Value(m.content)}}));
  }
  return {{"messages", jinja::Value::List(std::move(list))},
          {"add_generation_prompt", jinja::Value(add_generation_prompt)},
          {"bos_token", jinja::Value(bos)},
          {"eos_token", jinja::Value(eos)},
          // transformers passes these even when unused.
          {"tools", jinja::Value::None()},
          {"documents", jinja::Value::None()}};
}

}  // namespace

std::string ChatTemplate::BuiltinNames() {
  std::string out;
  for (const Builtin& b : kBuiltins) absl::StrAppend(&out, out.empty() ? "" : ", ", b.name);
  return out;
}

std::string ChatTemplate::BuiltinSource(std::string_view name) {
  for (const Builtin& b : kBuiltins) {
    if (name == b.name) return b.source;
  }
  return "";
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromModel(std::string_view jinja_source,
                                                     std::string bos_token, std::string eos_token) {
  if (jinja_source.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the model has no chat template", Hint()));
  }
  TPS_RETURN_IF_ERROR(tokenizer_internal::ValidateUtf8(jinja_source));
  auto t = jinja::Template::Parse(jinja_source);
  if (!t.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the model's chat template is not supported: ", t.status().message(), Hint()));
  }
  ChatTemplate chat("model", std::make_shared<const jinja::Template>(*std::move(t)),
                    std::move(bos_token), std::move(eos_token));
  // The template comes from the model file and is untrusted: a template that
  // cannot render a short conversation within a small budget (a loop that
  // does not end, an output that explodes) is refused now, in bounded time,
  // instead of costing every chat request the full render budget.
  const std::vector<ChatMessage> probe = {{"system", "You are a helpful assistant."},
                                          {"user", "Hello!"},
                                          {"assistant", "Hi! How can I help?"},
                                          {"user", "Tell me a joke."}};
  auto rendered = chat.template_->Render(
      Globals(probe, true, chat.bos_, chat.eos_),
      jinja::RenderLimits{.max_steps = kProbeSteps, .max_output_bytes = kProbeOutputBytes});
  if (!rendered.ok() && rendered.status().code() == absl::StatusCode::kResourceExhausted) {
    return absl::InvalidArgumentError(
        absl::StrCat("the model's chat template is refused: rendering a 4-message conversation "
                     "exceeds the load-time budget: ",
                     rendered.status().message(), Hint()));
  }
  return chat;
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromName(std::string_view name, std::string bos_token,
                                                    std::string eos_token) {
  std::string source = BuiltinSource(name);
  if (source.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown chat template \"",
                                                   absl::string_view(name.data(), name.size()),
                                                   "\"; built-ins: ", BuiltinNames()));
  }
  auto t = jinja::Template::Parse(source);
  if (!t.ok()) return t.status();  // a bug in kBuiltins; covered by tests
  return ChatTemplate(std::string(name), std::make_shared<const jinja::Template>(*std::move(t)),
                      std::move(bos_token), std::move(eos_token));
}

absl::StatusOr<ChatTemplate> ChatTemplate::ForTokenizer(const Tokenizer& tok,
                                                        std::string_view override_name) {
  std::string bos = tok.bos_id() >= 0 ? tok.TokenText(tok.bos_id()) : "";
  std::string eos = tok.eos_id() >= 0 ? tok.TokenText(tok.eos_id()) : "";
  if (!override_name.empty()) return FromName(override_name, std::move(bos), std::move(eos));
  return FromModel(tok.data().chat_template, std::move(bos), std::move(eos));
}

absl::StatusOr<std::string> ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                                 bool add_generation_prompt) const {
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    for (const std::string* s : {&m.role, &m.content}) {
      absl::Status st = tokenizer_internal::ValidateUtf8(*s);
      if (!st.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("message ", i, ": ", st.message()));
      }
    }
  }
  auto out = template_->Render(Globals(messages, add_generation_prompt, bos_, eos_),
                               jinja::RenderLimits{.max_steps = kRenderSteps});
  if (!out.ok() && name_ == "model" &&
      !absl::StrContains(out.status().message(), "rejected the conversation")) {
    return absl::InvalidArgumentError(absl::StrCat(out.status().message(), Hint()));
  }
  return out;
}

}  // namespace tpserve
