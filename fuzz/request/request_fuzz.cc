// libFuzzer target for the public request path: arbitrary bytes as a
// serialized tpserve.v1.GenerateRequest through what the gRPC service does
// with them — CheckUtf8Fields, parse, ValidateGenerateRequest,
// PromptTokens (text encoding, or chat rendering with the default model's
// template and content kept apart from special tokens) and
// ResolveMaxTokens. The first byte picks options (bit 0:
// special_tokens_in_content); the rest is the message.
//
// Invalid input must come back as a Status; a crash, a sanitizer report or a
// broken invariant (__builtin_trap) is a finding:
//   - a text prompt that passed validation always tokenizes;
//   - every prompt id is inside the vocabulary;
//   - special-token text in chat content never adds control tokens unless
//     the option allows it (the same chat with content emptied has as many).
//
//   scripts/fuzz.sh request 600      # see docs/fuzzing.md
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "router/api/prompt_tokens.h"
#include "router/api/request_validation.h"
#include "router/tokenizer/chat_template.h"
#include "router/tokenizer/tokenizer.h"
#include "router/tokenizer/tokenizer_gguf.h"

namespace {

using tpserve::Tokenizer;

struct Fixture {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<tpserve::ChatTemplate> chat;
  tpserve::RequestLimits limits;
};

const Fixture& Get() {
  static const Fixture* f = [] {
    const char* root = std::getenv("TPSERVE_ROOT");
    const std::string path =
        std::string(root != nullptr ? root : ".") + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    auto data = tpserve::TokenizerDataFromGguf(path);
    if (!data.ok()) {
      std::fprintf(stderr, "request_fuzz: %s (set TPSERVE_ROOT; run scripts/setup.sh)\n",
                   std::string(data.status().message()).c_str());
      std::abort();
    }
    auto tok = Tokenizer::Create(*std::move(data));
    if (!tok.ok()) std::abort();
    auto* fx = new Fixture;
    fx->tokenizer = std::make_unique<Tokenizer>(*std::move(tok));
    auto chat = tpserve::ChatTemplate::ForTokenizer(*fx->tokenizer);
    if (!chat.ok()) std::abort();
    fx->chat = std::make_unique<tpserve::ChatTemplate>(*std::move(chat));
    fx->limits.vocab_size = fx->tokenizer->vocab_size();
    fx->limits.context_length = 8192;
    return fx;
  }();
  return *f;
}

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

int CountSpecial(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  int n = 0;
  for (int32_t id : ids) n += tok.IsSpecial(id) ? 1 : 0;
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Fixture& fx = Get();
  const tpserve::PromptOptions options{.special_tokens_in_content = (data[0] & 1) != 0};
  const std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  if (!tpserve::CheckUtf8Fields(*tpserve::v1::GenerateRequest::descriptor(), bytes).ok()) return 0;
  tpserve::v1::GenerateRequest request;
  if (!request.ParseFromString(bytes)) return 0;
  if (!tpserve::ValidateGenerateRequest(request, fx.limits).ok()) return 0;
  auto ids = tpserve::PromptTokens(request, *fx.tokenizer, fx.chat.get(), options);
  if (request.prompt_case() == tpserve::v1::GenerateRequest::kText) Require(ids.ok());
  if (!ids.ok()) return 0;
  for (int32_t id : *ids) Require(id >= 0 && id < fx.tokenizer->vocab_size());
  (void)tpserve::ResolveMaxTokens(request, static_cast<int32_t>(ids->size()), fx.limits);

  if (request.prompt_case() == tpserve::v1::GenerateRequest::kChat &&
      !options.special_tokens_in_content) {
    tpserve::v1::ChatPrompt empty = request.chat();
    for (auto& m : *empty.mutable_messages()) m.clear_content();
    auto markup = tpserve::ChatPromptTokens(empty, *fx.tokenizer, fx.chat.get(), options);
    if (markup.ok()) {
      Require(CountSpecial(*fx.tokenizer, *ids) == CountSpecial(*fx.tokenizer, *markup));
    }
  }
  return 0;
}
