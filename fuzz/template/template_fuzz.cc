// libFuzzer target for the chat-template engine with arbitrary templates and
// arbitrary arguments. The input is "<template>\0<arguments>": the template
// goes through ChatTemplate::FromModel (parse, nesting bounds, the load-time
// render probe), then renders a conversation built from the argument bytes
// (messages split at \x01, role and content split at \x02; the first byte's
// bit 0 is add_generation_prompt) with Render and RenderParts, and the raw
// jinja::Template renders the same bytes as globals of every kind (strings,
// numbers, nested lists and dicts, none).
//
// Any crash, sanitizer report, hang (-timeout) or broken invariant
// (__builtin_trap) is a finding:
//   - a render is valid UTF-8 when its inputs are (messages are validated);
//   - RenderParts' parts joined are exactly Render's text, and its content
//     markers never leak into a part.
//
//   scripts/fuzz.sh template 600      # see docs/fuzzing.md
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_split.h"
#include "router/tokenizer/chat_template.h"
#include "router/tokenizer/jinja/template.h"
#include "router/tokenizer/jinja/value.h"
#include "router/tokenizer/unicode.h"

namespace {

using tpserve::jinja::Value;
using tpserve::jinja::ValueDict;
using tpserve::jinja::ValueList;

void Require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "template_fuzz: broken invariant: %s\n", what);
  __builtin_trap();
}

// Builds a value from the byte stream: the next byte picks the kind.
Value MakeValue(std::string_view& in, int depth) {
  if (in.empty()) return Value();
  const uint8_t kind = static_cast<uint8_t>(in[0]);
  in.remove_prefix(1);
  auto take = [&](size_t n) {
    n = std::min(n, in.size());
    std::string s(in.substr(0, n));
    in.remove_prefix(n);
    return s;
  };
  switch (depth >= 3 ? kind % 4 : kind % 6) {
    case 0:
      return Value(take(kind / 6 % 16));
    case 1:
      return Value(static_cast<int64_t>(static_cast<int8_t>(kind)));
    case 2:
      return Value((kind & 8) != 0);
    case 3:
      return Value::None();
    case 4: {
      ValueList items;
      for (int i = 0; i < kind / 6 % 5; ++i) items.push_back(MakeValue(in, depth + 1));
      return Value::List(std::move(items));
    }
    default: {
      ValueDict entries;
      for (int i = 0; i < kind / 6 % 5; ++i) {
        std::string key = take(3);
        entries.emplace_back(key, MakeValue(in, depth + 1));
      }
      return Value::Dict(std::move(entries));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string_view source = input.substr(0, nul);
  std::string_view args = nul == std::string_view::npos ? "" : input.substr(nul + 1);

  // Raw engine: arbitrary globals, small limits so each input stays fast.
  auto raw = tpserve::jinja::Template::Parse(source);
  if (raw.ok()) {
    std::string_view in = args;
    ValueDict globals = {{"messages", MakeValue(in, 0)},
                         {"add_generation_prompt", MakeValue(in, 0)},
                         {"x", MakeValue(in, 0)}};
    (void)raw->Render(
        globals, tpserve::jinja::RenderLimits{.max_steps = 50'000, .max_output_bytes = 1 << 20});
  }

  auto chat = tpserve::ChatTemplate::FromModel(source, "<s>", "</s>");
  if (!chat.ok()) return 0;
  chat->SetRenderStepLimit(50'000);
  std::vector<tpserve::ChatMessage> messages;
  const bool generation = !args.empty() && (args[0] & 1) != 0;
  if (!args.empty()) args.remove_prefix(1);
  for (absl::string_view m : absl::StrSplit(absl::string_view(args.data(), args.size()), '\x01')) {
    std::vector<absl::string_view> rc = absl::StrSplit(m, absl::MaxSplits('\x02', 1));
    messages.push_back({std::string(rc[0]), rc.size() > 1 ? std::string(rc[1]) : ""});
    if (messages.size() >= 8) break;
  }
  auto text = chat->Render(messages, generation);
  if (!text.ok()) return 0;
  Require(tpserve::tokenizer_internal::ValidateUtf8(*text).ok(), "the render is valid UTF-8");
  auto parts = chat->RenderParts(messages, generation);
  if (!parts.ok()) return 0;
  std::string joined;
  for (const tpserve::ChatTemplate::Part& p : *parts) joined += p.text;
  Require(joined == *text, "the parts joined are the render");
  // The markers RenderParts wraps content in never leak into a part.
  bool inputs_have_markers = source.find("\xEE\x80") != std::string_view::npos;
  for (const tpserve::ChatMessage& m : messages) {
    inputs_have_markers = inputs_have_markers || m.content.find("\xEE\x80") != std::string::npos ||
                          m.role.find("\xEE\x80") != std::string::npos;
  }
  for (const tpserve::ChatTemplate::Part& p : *parts) {
    if (!inputs_have_markers) {
      Require(p.text.find("\xEE\x80\x80") == std::string::npos, "no marker in a part");
    }
  }
  return 0;
}
