#include "router/tokenizer/chat_template.h"

#include <random>
#include <utility>

#include "absl/strings/ascii.h"
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
                               jinja::RenderLimits{.max_steps = render_steps_});
  if (!out.ok() && name_ == "model" &&
      !absl::StrContains(out.status().message(), "rejected the conversation")) {
    return absl::InvalidArgumentError(absl::StrCat(out.status().message(), Hint()));
  }
  return out;
}

}  // namespace tpserve

namespace tpserve {
namespace {

// Splits `marked` at the markers "<open>i<sep>" ... "<close>"; `ok` is false
// when the markers are not well formed (the template reordered or cut them).
std::vector<ChatTemplate::Part> SplitMarked(const std::string& marked, const std::string& open,
                                            const std::string& close, bool* ok) {
  std::vector<ChatTemplate::Part> parts;
  *ok = true;
  size_t pos = 0;
  while (pos < marked.size()) {
    const size_t start = marked.find(open, pos);
    if (start == std::string::npos) {
      parts.push_back({marked.substr(pos), false});
      break;
    }
    if (start > pos) parts.push_back({marked.substr(pos, start - pos), false});
    const size_t body = start + open.size();
    const size_t end = marked.find(close, body);
    if (end == std::string::npos || marked.find(open, body) < end) {
      *ok = false;
      return {};
    }
    parts.push_back({marked.substr(body, end - body), true});
    pos = end + close.size();
  }
  return parts;
}

std::string Joined(const std::vector<ChatTemplate::Part>& parts) {
  std::string out;
  for (const ChatTemplate::Part& p : parts) out += p.text;
  return out;
}

}  // namespace

absl::StatusOr<std::vector<ChatTemplate::Part>> ChatTemplate::RenderParts(
    const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  TPS_ASSIGN_OR_RETURN(std::string plain, Render(messages, add_generation_prompt));
  // Private-use code points around a 64-bit nonce: content cannot forge a
  // marker without guessing the nonce.
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  const std::string nonce = absl::StrCat(rng());
  const std::string open = absl::StrCat("\xEE\x80\x80", nonce, "\xEE\x80\x81");
  const std::string close = absl::StrCat("\xEE\x80\x82", nonce, "\xEE\x80\x83");
  // First as sent; then with content pre-trimmed, for templates that trim it
  // (`message['content'] | trim`: the markers would shield the whitespace).
  for (bool trim : {false, true}) {
    std::vector<ChatMessage> marked = messages;
    for (ChatMessage& m : marked) {
      const std::string content =
          trim ? std::string(absl::StripAsciiWhitespace(m.content)) : m.content;
      m.content = absl::StrCat(open, content, close);
    }
    absl::StatusOr<std::string> text = Render(marked, add_generation_prompt);
    if (!text.ok()) continue;
    bool ok = false;
    std::vector<Part> parts = SplitMarked(*text, open, close, &ok);
    // Exact or nothing: a template that cuts, reverses or otherwise rewrites
    // content could turn user text into markup.
    if (ok && Joined(parts) == plain) return parts;
  }
  return absl::InvalidArgumentError(
      "chat: a message contains special-token text and the model's chat template rewrites "
      "message content, so the two cannot be kept apart; remove the special-token text, choose "
      "a built-in template (--chat_template) or allow special tokens in content "
      "(--chat_content_special_tokens)");
}

}  // namespace tpserve
