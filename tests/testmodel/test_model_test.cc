#include "tests/testmodel/test_model.h"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "formats/gguf_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "router/tokenizer/tokenizer.h"
#include "router/tokenizer/tokenizer_gguf.h"

namespace tpserve {
namespace {

using ::testing::HasSubstr;

std::string Tmp(const std::string& name) {
  const char* t = std::getenv("TEST_TMPDIR");
  return std::string(t != nullptr ? t : "/tmp") + "/" + name;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(TestModelTest, DeterministicPerSeed) {
  TestModelSpec spec;
  spec.vocab_size = 128;
  spec.dtype = DType::kQ4_1;
  ASSERT_TRUE(WriteTestModel(spec, Tmp("a.gguf")).ok());
  ASSERT_TRUE(WriteTestModel(spec, Tmp("b.gguf")).ok());
  spec.seed = 2;
  ASSERT_TRUE(WriteTestModel(spec, Tmp("c.gguf")).ok());
  const std::string a = ReadAll(Tmp("a.gguf"));
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, ReadAll(Tmp("b.gguf")));
  EXPECT_NE(a, ReadAll(Tmp("c.gguf")));
}

TEST(TestModelTest, TruncatedVocabularyKeepsMergesConsistent) {
  TestModelSpec spec;
  spec.vocab_size = 300;
  ASSERT_TRUE(WriteTestModel(spec, Tmp("v300.gguf")).ok());
  auto f = GgufFile::Open(Tmp("v300.gguf"));
  ASSERT_TRUE(f.ok()) << f.status();
  auto toks = (*f)->GetStringArray("tokenizer.ggml.tokens");
  auto merges = (*f)->GetStringArray("tokenizer.ggml.merges");
  ASSERT_TRUE(toks.ok() && merges.ok());
  EXPECT_EQ(toks->size(), 300u);
  EXPECT_FALSE(merges->empty());
  absl::flat_hash_set<std::string> known(toks->begin(), toks->end());
  for (absl::string_view m : *merges) {
    const size_t sp = m.find(' ');
    ASSERT_NE(sp, absl::string_view::npos);
    const std::string l(m.substr(0, sp)), r(m.substr(sp + 1));
    EXPECT_TRUE(known.contains(l) && known.contains(r) && known.contains(l + r)) << m;
  }
  EXPECT_EQ((*f)->FindTensor("token_embd.weight")->shape, (std::vector<int64_t>{300, 64}));
}

TEST(TestModelTest, RejectsBadSpecs) {
  TestModelSpec spec;
  spec.num_kv_heads = 3;  // 4 heads
  EXPECT_THAT(WriteTestModel(spec, Tmp("x.gguf")).message(), HasSubstr("multiple of num_kv_heads"));
  spec = TestModelSpec();
  spec.dtype = DType::kQ8_0;
  spec.hidden_size = 48;
  spec.num_heads = 4;
  EXPECT_THAT(WriteTestModel(spec, Tmp("x.gguf")).message(), HasSubstr("multiples of 32"));
  spec = TestModelSpec();
  spec.format = TestModelFormat::kHf;
  spec.dtype = DType::kQ4_1;
  EXPECT_FALSE(WriteTestModel(spec, Tmp("x_hf")).ok());
  spec = TestModelSpec();
  spec.vocab_size = 1 << 20;
  EXPECT_THAT(WriteTestModel(spec, Tmp("x.gguf")).message(), HasSubstr("exceeds"));
  spec = TestModelSpec();
  spec.architecture = "gemma";
  EXPECT_FALSE(WriteTestModel(spec, Tmp("x.gguf")).ok());
  spec = TestModelSpec();
  spec.vocab_source = "/nonexistent.gguf";
  EXPECT_THAT(WriteTestModel(spec, Tmp("x.gguf")).message(), HasSubstr("/nonexistent.gguf"));
}

// The HF directory's tokenizer.json, run through Hugging Face `tokenizers`,
// must tokenize exactly like tpserve's tokenizer over the GGUF's metadata:
// both formats carry the same real vocabulary.
TEST(TestModelTest, HfTokenizerJsonAgreesWithGgufVocabulary) {
  const char* root = std::getenv("TPSERVE_ROOT");
  ASSERT_NE(root, nullptr) << "set TPSERVE_ROOT";
  TestModelSpec spec;
  ASSERT_TRUE(WriteTestModel(spec, Tmp("tok.gguf")).ok());
  spec.format = TestModelFormat::kHf;
  ASSERT_TRUE(WriteTestModel(spec, Tmp("tok_hf")).ok());

  const std::vector<std::string> texts = {
      "Hello, world!",
      "The year 2024 had 366 days.",
      "  leading spaces and\ttabs\nnewlines",
      "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
      "naïve café — ünïcödé 你好",
      "def f(x):\n    return x ** 2  # square",
      "emoji 🙂 and symbols <>{}[]"};
  nlohmann::json in = texts;
  const std::string in_path = Tmp("texts.json"), out_path = Tmp("ids.json");
  std::ofstream(in_path) << in.dump();
  const std::string cmd = std::string(root) + "/.venv/bin/python3 " + root +
                          "/tests/testmodel/encode_with_tokenizers.py " +
                          Tmp("tok_hf/tokenizer.json") + " " + in_path + " " + out_path;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const nlohmann::json want = nlohmann::json::parse(ReadAll(out_path));

  auto data = TokenizerDataFromGguf(Tmp("tok.gguf"));
  ASSERT_TRUE(data.ok()) << data.status();
  auto tok = Tokenizer::Create(std::move(*data));
  ASSERT_TRUE(tok.ok()) << tok.status();
  for (size_t i = 0; i < texts.size(); ++i) {
    auto ids = tok->Encode(texts[i], false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, want[i].get<std::vector<int32_t>>()) << texts[i];
  }
}

}  // namespace
}  // namespace tpserve
