// SentencePiece-style BPE parity on llama.cpp's Llama-2 vocabulary
// (ggml-vocab-llama-spm.gguf): ids of >= 1,000 generated strings equal Google
// sentencepiece's (model built from the same pieces, scores and types, with
// byte_fallback), llama.cpp's own expected ids (.inp/.out) match, and
// decode(encode(s)) == s.
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

class SpmParity : public testing::Test {
 protected:
  void SetUp() override {
    std::string root;
    ASSERT_TRUE(tokenizer_testing::Root(&root).ok());
    base_ = root + "/models/vocab/ggml-vocab-llama-spm.gguf";
    auto data = TokenizerDataFromGguf(base_);
    ASSERT_TRUE(data.ok()) << data.status() << " (run scripts/setup.sh)";
    EXPECT_EQ(data->model, TokenizerData::Model::kSentencePieceBpe);
    EXPECT_TRUE(data->add_space_prefix);
    auto tok = Tokenizer::Create(*std::move(data));
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = std::make_unique<Tokenizer>(*std::move(tok));
  }
  std::string base_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(SpmParity, MatchesSentencePiece) {
  nlohmann::json ref;
  ASSERT_TRUE(tokenizer_testing::RunReference({"spm", "--gguf", base_, "--n", "1200"}, &ref).ok());
  int n = 0, mismatches = 0;
  for (const auto& c : ref["cases"]) {
    std::string text = c["text"].get<std::string>();
    std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
    auto got = tok_->Encode(text, /*add_special=*/false);
    ASSERT_TRUE(got.ok()) << got.status();
    ++n;
    if (*got != want && ++mismatches <= 10) {
      ADD_FAILURE() << "text: \"" << text << "\"\n got: " << absl::StrJoin(*got, " ")
                    << "\nwant: " << absl::StrJoin(want, " ");
    }
    auto decoded = tok_->Decode(*got);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, c["decoded"].get<std::string>());
    EXPECT_EQ(*decoded, text);
    IncrementalDetokenizer detok(tok_.get(), /*skip_special=*/false, /*at_text_start=*/true);
    std::string streamed;
    for (int32_t id : *got) streamed += *detok.Add(id);
    EXPECT_EQ(streamed + detok.Finish(), text);
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_GE(n, 1000);
}

TEST_F(SpmParity, MatchesLlamaCppExpectations) {
  std::ifstream inp(base_ + ".inp"), out(base_ + ".out");
  ASSERT_TRUE(inp && out);
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
    auto got = tok_->Encode(texts[i], /*add_special=*/false);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(absl::StrJoin(*got, " "), absl::StrJoin(want, " ")) << "\"" << texts[i] << "\"";
  }
}

TEST_F(SpmParity, ContinuationKeepsTheLeadingSpace) {
  auto ids = tok_->Encode("Hello world", false);
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 2u);
  IncrementalDetokenizer generated(tok_.get(), /*skip_special=*/true);  // after a prompt
  EXPECT_EQ(*generated.Add((*ids)[1]), " world");
  IncrementalDetokenizer whole(tok_.get(), /*skip_special=*/true, /*at_text_start=*/true);
  EXPECT_EQ(*whole.Add((*ids)[0]), "Hello");
  EXPECT_EQ(*whole.Add((*ids)[1]), " world");
}

TEST_F(SpmParity, BosAndSpecialTokens) {
  auto ids = tok_->Encode("Hi", /*add_special=*/true);
  ASSERT_TRUE(ids.ok());
  ASSERT_FALSE(ids->empty());
  EXPECT_EQ((*ids)[0], tok_->bos_id());
  auto with_eos = tok_->Encode("Hi</s>", false);
  ASSERT_TRUE(with_eos.ok());
  EXPECT_EQ(with_eos->back(), tok_->eos_id());
  EncodeOptions literal;
  literal.parse_special = false;
  auto plain = tok_->Encode("Hi</s>", literal);
  ASSERT_TRUE(plain.ok());
  EXPECT_NE(plain->back(), tok_->eos_id());
  auto skipped = tok_->Decode(*with_eos, /*skip_special=*/true);
  ASSERT_TRUE(skipped.ok());
  EXPECT_EQ(*skipped, "Hi");
}

}  // namespace
}  // namespace tpserve
