// libFuzzer target for router/tokenizer over arbitrary bytes. The first byte
// picks what to exercise; the rest is the input:
//   0  encode with the default model's byte-level BPE (SmolLM2), specials
//      parsed; when the bytes are valid UTF-8, decode(encode(s)) must be s
//   1  the same with the SentencePiece vocabulary (llama-spm), specials as text
//   2  decode arbitrary ids (2 bytes each, some out of range) and stream them
//      through IncrementalDetokenizer: output must be valid UTF-8 and equal
//      Decode's
//   3  render a chat (messages split at NUL bytes) with the model's template
//   4  parse the bytes as a chat template and render a fixed conversation
// Invalid input must come back as a Status; any crash, sanitizer report or
// broken invariant (__builtin_trap) is a finding.
//
//   fuzz/tokenizer/run_fuzzer.sh 300     # see docs/fuzzing.md
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "router/tokenizer/bpe_model.h"
#include "router/tokenizer/chat_template.h"
#include "router/tokenizer/incremental_detokenizer.h"
#include "router/tokenizer/tokenizer.h"
#include "router/tokenizer/tokenizer_gguf.h"
#include "router/tokenizer/unicode.h"

namespace {

using tpserve::Tokenizer;

struct Fixture {
  std::unique_ptr<Tokenizer> bpe;
  std::unique_ptr<Tokenizer> spm;
  std::unique_ptr<tpserve::ChatTemplate> chat;
};

std::unique_ptr<Tokenizer> LoadOrDie(const std::string& path) {
  auto data = tpserve::TokenizerDataFromGguf(path);
  if (!data.ok()) {
    std::fprintf(stderr, "tokenizer_fuzz: %s (set TPSERVE_ROOT; run scripts/setup.sh)\n",
                 std::string(data.status().message()).c_str());
    std::abort();
  }
  auto tok = Tokenizer::Create(*std::move(data));
  if (!tok.ok()) std::abort();
  return std::make_unique<Tokenizer>(*std::move(tok));
}

const Fixture& Get() {
  static const Fixture* f = [] {
    const char* root = std::getenv("TPSERVE_ROOT");
    std::string base = root != nullptr ? root : ".";
    auto* fx = new Fixture;
    fx->bpe = LoadOrDie(base + "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    fx->spm = LoadOrDie(base + "/models/vocab/ggml-vocab-llama-spm.gguf");
    auto chat = tpserve::ChatTemplate::FromModel(fx->bpe->data().chat_template, "", "");
    if (!chat.ok()) std::abort();
    fx->chat = std::make_unique<tpserve::ChatTemplate>(*std::move(chat));
    return fx;
  }();
  return *f;
}

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

// What decode(encode(text)) can give back. Byte-level: `text` without the
// bytes the vocabulary cannot represent (their one-character token is
// missing; the tokenizer drops them, as HF does). SentencePiece: U+2581 in
// the text is the vocabulary's space and decodes as " ", as in sentencepiece.
std::string Representable(const Tokenizer& tok, std::string_view text) {
  std::string out;
  if (tok.data().model != tpserve::TokenizerData::Model::kByteLevelBpe) {
    for (size_t i = 0; i < text.size(); ++i) {
      if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
        out += ' ';
        i += 2;
      } else {
        out += text[i];
      }
    }
    return out;
  }
  for (char c : text) {
    std::string s;
    tpserve::tokenizer_internal::AppendUtf8(
        tpserve::tokenizer_internal::ByteToCodepoint(static_cast<uint8_t>(c)), &s);
    if (tok.TokenId(s) >= 0) out += c;
  }
  // A dropped lead byte (0xF1, 0xF2 in SmolLM2) leaves stray continuation
  // bytes, which decode as U+FFFD.
  return tpserve::tokenizer_internal::Utf8Lossy(out);
}

void RoundTrip(const Tokenizer& tok, std::string_view text, bool parse_special) {
  tpserve::EncodeOptions o;
  o.parse_special = parse_special;
  auto ids = tok.Encode(text, o);
  Require(ids.ok() == tpserve::tokenizer_internal::ValidateUtf8(text).ok());
  if (!ids.ok()) return;
  auto back = tok.Decode(*ids);
  Require(back.ok() && *back == Representable(tok, text));
}

void DecodeIds(const Tokenizer& tok, const uint8_t* data, size_t size) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < size; i += 2) {
    ids.push_back(static_cast<int32_t>((data[i] | (data[i + 1] << 8)) % (tok.vocab_size() + 8)));
  }
  bool all_valid = true;
  for (int32_t id : ids) all_valid = all_valid && id < tok.vocab_size();
  const bool skip = size % 2 == 1;
  auto decoded = tok.Decode(ids, skip);
  Require(decoded.ok() == all_valid);
  tpserve::IncrementalDetokenizer detok(&tok, skip, /*at_text_start=*/true);
  std::string streamed;
  for (int32_t id : ids) {
    auto delta = detok.Add(id);
    Require(delta.ok() == (id < tok.vocab_size()));
    if (delta.ok()) {
      Require(tpserve::tokenizer_internal::ValidateUtf8(*delta).ok());
      streamed += *delta;
    }
  }
  streamed += detok.Finish();
  if (all_valid) Require(streamed == *decoded);
}

void Chat(const tpserve::ChatTemplate& chat, std::string_view input) {
  std::vector<tpserve::ChatMessage> messages;
  static const char* kRoles[] = {"system", "user", "assistant", "tool"};
  size_t start = 0;
  for (size_t i = 0; i <= input.size(); ++i) {
    if (i == input.size() || input[i] == '\0') {
      std::string_view part = input.substr(start, i - start);
      std::string role = kRoles[messages.size() % 4];
      if (!part.empty()) role = kRoles[static_cast<uint8_t>(part[0]) % 4];
      messages.push_back({role, std::string(part)});
      start = i + 1;
    }
  }
  auto text = chat.Render(messages, input.size() % 2 == 0);
  bool valid = tpserve::tokenizer_internal::ValidateUtf8(input).ok();
  Require(text.ok() == valid);
}

void TemplateSource(std::string_view source) {
  auto chat = tpserve::ChatTemplate::FromModel(source, "<s>", "</s>");
  if (!chat.ok()) return;
  auto text = chat->Render({{"system", "Be brief."},
                            {"user", "Hi \xF0\x9F\x91\x8B"},
                            {"assistant", "  Hello!  "},
                            {"user", "Bye"}},
                           true);
  if (text.ok()) Require(text->size() <= (64u << 20));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Fixture& f = Get();
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 5) {
    case 0:
      RoundTrip(*f.bpe, rest, /*parse_special=*/true);
      break;
    case 1:
      RoundTrip(*f.spm, rest, /*parse_special=*/false);
      break;
    case 2:
      DecodeIds(data[0] & 4 ? *f.spm : *f.bpe, data + 1, size - 1);
      break;
    case 3:
      Chat(*f.chat, rest);
      break;
    case 4:
      TemplateSource(rest);
      break;
  }
  return 0;
}
