// Tokenizer throughput on the default model's vocabulary (SmolLM2):
// Encode, Decode and streaming detokenization of a mixed English / code /
// multilingual text, and chat rendering with the model's template.
//
//   TPSERVE_ROOT=$PWD bazel run -c opt //router/tokenizer:tokenizer_benchmark
#include <cstdlib>
#include <string>

#include "benchmark/benchmark.h"
#include "router/tokenizer/chat_template.h"
#include "router/tokenizer/incremental_detokenizer.h"
#include "router/tokenizer/tokenizer.h"
#include "router/tokenizer/tokenizer_gguf.h"

namespace tpserve {
namespace {

const Tokenizer& Default() {
  static const Tokenizer* tok = [] {
    const char* root = std::getenv("TPSERVE_ROOT");
    auto data = TokenizerDataFromGguf(std::string(root ? root : ".") +
                                      "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!data.ok()) std::abort();
    return new Tokenizer(*Tokenizer::Create(*std::move(data)));
  }();
  return *tok;
}

std::string Text() {
  std::string unit =
      "The quick brown fox jumps over the lazy dog. It's 2024 and we've got 3.14159 reasons.\n"
      "def tokenize(text):\n    return [ord(c) for c in text if c != ' ']  # code\n"
      "Größere Städte, 東京と大阪, Привет мир, 🤖✨ emoji and    "
      "whitespace\t\truns.\n";
  std::string text;
  while (text.size() < (100 << 10)) text += unit;
  return text;
}

void BM_Encode(benchmark::State& state) {
  const Tokenizer& tok = Default();
  std::string text = Text();
  size_t tokens = 0;
  for (auto _ : state) {
    auto ids = tok.Encode(text, false);
    tokens = ids->size();
    benchmark::DoNotOptimize(ids);
  }
  state.SetBytesProcessed(state.iterations() * text.size());
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens * state.iterations()),
                                                  benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Encode);

void BM_Decode(benchmark::State& state) {
  const Tokenizer& tok = Default();
  std::vector<int32_t> ids = *tok.Encode(Text(), false);
  for (auto _ : state) benchmark::DoNotOptimize(tok.Decode(ids));
  state.counters["tokens/s"] = benchmark::Counter(
      static_cast<double>(ids.size() * state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Decode);

void BM_StreamDetokenize(benchmark::State& state) {
  const Tokenizer& tok = Default();
  std::vector<int32_t> ids = *tok.Encode(Text(), false);
  for (auto _ : state) {
    IncrementalDetokenizer detok(&tok);
    for (int32_t id : ids) benchmark::DoNotOptimize(detok.Add(id));
  }
  state.counters["tokens/s"] = benchmark::Counter(
      static_cast<double>(ids.size() * state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_StreamDetokenize);

void BM_ChatRender(benchmark::State& state) {
  auto t = *ChatTemplate::FromModel(Default().data().chat_template, "", "");
  std::vector<ChatMessage> msgs = {{"system", "You are terse."},
                                   {"user", "Hello there, how are you?"},
                                   {"assistant", "Fine."},
                                   {"user", "Tell me a joke about tokenizers."}};
  for (auto _ : state) benchmark::DoNotOptimize(t.Render(msgs, true));
}
BENCHMARK(BM_ChatRender);

}  // namespace
}  // namespace tpserve

BENCHMARK_MAIN();
