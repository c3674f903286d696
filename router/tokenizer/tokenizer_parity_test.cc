// Byte-level BPE parity: token ids of >= 1,000 generated strings equal Hugging
// Face `tokenizers` on the same vocabulary (the default model, SmolLM2), and
// the ids llama.cpp itself expects for its test strings (.inp/.out files of
// its vocab-only GGUFs: GPT-2, StarCoder = SmolLM's pre-tokenizer, Llama-3,
// Qwen2). decode(encode(s)) == s, and the incremental detokenizer streams the
// same text.
#include <fstream>
#include <sstream>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "router/tokenizer/incremental_detokenizer.h"
#include "router/tokenizer/reference_runner.h"
#include "router/tokenizer/tokenizer.h"
#include "router/tokenizer/tokenizer_gguf.h"

namespace tpserve {
namespace {

using tokenizer_testing::Root;
using tokenizer_testing::RunReference;

std::string ModelPath(const std::string& rel) {
  std::string root;
  EXPECT_TRUE(Root(&root).ok());
  return root + "/" + rel;
}

Tokenizer Load(const std::string& gguf) {
  auto data = TokenizerDataFromGguf(gguf);
  EXPECT_TRUE(data.ok()) << data.status();
  auto tok = Tokenizer::Create(*std::move(data));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return *std::move(tok);
}

std::string Streamed(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  IncrementalDetokenizer detok(&tok, /*skip_special=*/false, /*at_text_start=*/true);
  std::string text;
  for (int32_t id : ids) {
    auto delta = detok.Add(id);
    EXPECT_TRUE(delta.ok());
    text += *delta;
  }
  return text + detok.Finish();
}

// Compares every case; returns the number checked.
int CompareCases(const Tokenizer& tok, const nlohmann::json& cases, bool check_roundtrip) {
  int n = 0, mismatches = 0;
  for (const auto& c : cases) {
    std::string text = c["text"].get<std::string>();
    std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
    auto got = tok.Encode(text, /*add_special=*/false);
    ++n;
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) continue;
    if (*got != want && ++mismatches <= 10) {
      ADD_FAILURE() << "text: \"" << text << "\"\n got: " << absl::StrJoin(*got, " ")
                    << "\nwant: " << absl::StrJoin(want, " ");
    }
    auto decoded = tok.Decode(*got);
    EXPECT_TRUE(decoded.ok());
    if (!decoded.ok()) continue;
    EXPECT_EQ(*decoded, c["decoded"].get<std::string>()) << text;
    if (check_roundtrip) {
      EXPECT_EQ(*decoded, text);
    }
    EXPECT_EQ(Streamed(tok, *got), *decoded) << text;
  }
  EXPECT_EQ(mismatches, 0);
  return n;
}

TEST(TokenizerParity, DefaultModelMatchesHfTokenizers) {
  std::string gguf = ModelPath("models/SmolLM2-135M-Instruct.Q4_1.gguf");
  std::string json_path = tokenizer_testing::TempPath("smollm2_tokenizer.json");
  nlohmann::json ref;
  ASSERT_TRUE(RunReference({"bytelevel", "--gguf", gguf, "--pre", "smollm", "--n", "1200",
                            "--json_out", json_path},
                           &ref)
                  .ok());
  Tokenizer tok = Load(gguf);
  EXPECT_EQ(tok.vocab_size(), 49152);
  EXPECT_EQ(tok.TokenId("<|im_end|>"), 2);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_GE(CompareCases(tok, ref["cases"], /*check_roundtrip=*/true), 1000);

  // The same vocabulary through the tokenizer.json loader.
  auto data = TokenizerDataFromTokenizerJson(json_path);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->pre_tokenizer, "smollm");
  auto tok_json = Tokenizer::Create(*std::move(data));
  ASSERT_TRUE(tok_json.ok()) << tok_json.status();
  EXPECT_GE(CompareCases(*tok_json, ref["cases"], true), 1000);
}

// llama.cpp's own expected ids: .inp holds strings separated by
// "\n__ggml_vocab_test__\n", .out one line of ids per string.
void CheckLlamaCppExpectations(const Tokenizer& tok, const std::string& base) {
  std::ifstream inp(base + ".inp"), out(base + ".out");
  ASSERT_TRUE(inp && out) << "missing " << base << ".inp/.out: run scripts/setup.sh";
  std::stringstream si, so;
  si << inp.rdbuf();
  so << out.rdbuf();
  std::vector<std::string> texts = absl::StrSplit(si.str(), "\n__ggml_vocab_test__\n");
  std::vector<std::string> lines = absl::StrSplit(so.str(), '\n');
  ASSERT_GE(lines.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int32_t> want;
    for (absl::string_view t : absl::StrSplit(lines[i], ' ', absl::SkipEmpty())) {
      want.push_back(std::stoi(std::string(t)));
    }
    auto got = tok.Encode(texts[i], /*add_special=*/false);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(absl::StrJoin(*got, " "), absl::StrJoin(want, " ")) << "text: \"" << texts[i] << "\"";
  }
}

class VocabParity : public testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(VocabParity, MatchesHfTokenizersAndLlamaCpp) {
  auto [name, pre] = GetParam();
  std::string base = ModelPath(std::string("models/vocab/ggml-vocab-") + name + ".gguf");
  Tokenizer tok = Load(base);
  CheckLlamaCppExpectations(tok, base);
  nlohmann::json ref;
  ASSERT_TRUE(RunReference({"bytelevel", "--gguf", base, "--pre", pre, "--n", "400"}, &ref).ok());
  CompareCases(tok, ref["cases"], /*check_roundtrip=*/true);
}

INSTANTIATE_TEST_SUITE_P(LlamaCppVocabs, VocabParity,
                         testing::Values(std::make_pair("gpt-2", "gpt2"),
                                         std::make_pair("starcoder", "smollm"),
                                         std::make_pair("llama-bpe", "llama3"),
                                         std::make_pair("qwen2", "qwen2")),
                         [](const auto& info) {
                           std::string n = info.param.first;
                           for (char& c : n) c = (c == '-') ? '_' : c;
                           return n;
                         });

}  // namespace
}  // namespace tpserve
