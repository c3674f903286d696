// The hand-written pre-tokenizer scanners split exactly as the published
// regexes do under Hugging Face tokenizers' regex engine (Oniguruma), on
// generated multilingual / emoji / code / whitespace strings.
#include "router/tokenizer/pre_tokenizer.h"

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "router/tokenizer/reference_runner.h"
#include "router/tokenizer/unicode.h"

namespace tpserve::tokenizer_internal {
namespace {

std::vector<std::string> Split(PreTokenizer kind, const std::string& text) {
  std::vector<std::string_view> views;
  PreTokenize(kind, text, &views);
  return std::vector<std::string>(views.begin(), views.end());
}

TEST(PreTokenizer, HandPickedSplits) {
  using V = std::vector<std::string>;
  EXPECT_EQ(Split(PreTokenizer::kGpt2, "Hello  world's 123!!\n"),
            (V{"Hello", " ", " world", "'s", " 123", "!!", "\n"}));
  EXPECT_EQ(Split(PreTokenizer::kSmolLm, "a 123"), (V{"a", " ", "1", "2", "3"}));
  EXPECT_EQ(Split(PreTokenizer::kLlama3, "12345 I'M\r\n\n x"),
            (V{"123", "45", " I", "'M", "\r\n\n", " x"}));
  EXPECT_EQ(Split(PreTokenizer::kQwen2, "12"), (V{"1", "2"}));
}

TEST(PreTokenizer, NamesMapToScanners) {
  EXPECT_EQ(*PreTokenizerFromName("smollm"), PreTokenizer::kSmolLm);
  EXPECT_EQ(*PreTokenizerFromName("llama-bpe"), PreTokenizer::kLlama3);
  auto bad = PreTokenizerFromName("falcon");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("supported"), absl::string_view::npos);
}

TEST(PreTokenizer, MatchesHfRegexSplits) {
  nlohmann::json ref;
  ASSERT_TRUE(
      tokenizer_testing::RunReference({"pretok", "--n", "1500", "--seed", "99"}, &ref).ok());
  const std::pair<const char*, PreTokenizer> kinds[] = {{"gpt2", PreTokenizer::kGpt2},
                                                        {"smollm", PreTokenizer::kSmolLm},
                                                        {"llama3", PreTokenizer::kLlama3},
                                                        {"qwen2", PreTokenizer::kQwen2}};
  int checked = 0, mismatches = 0;
  for (const auto& c : ref["cases"]) {
    std::string text = c["text"].get<std::string>();
    for (const auto& [name, kind] : kinds) {
      auto want = c[name].get<std::vector<std::string>>();
      auto got = Split(kind, text);
      ++checked;
      if (got != want && ++mismatches <= 10) {
        ADD_FAILURE() << name << " text: \"" << text << "\"\n got: [" << absl::StrJoin(got, "|")
                      << "]\nwant: [" << absl::StrJoin(want, "|") << "]";
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_GE(checked, 4 * 1000);
}

TEST(Unicode, ClassesAndValidation) {
  EXPECT_TRUE(IsLetter(U'é'));
  EXPECT_TRUE(IsLetter(0x4F60));  // 你
  EXPECT_TRUE(IsNumber(0x0663));  // Arabic-indic 3
  EXPECT_TRUE(IsNumber(0x00BD));  // ½
  EXPECT_TRUE(IsWhitespace(0x3000));
  EXPECT_FALSE(IsLetter(0x1F600));  // 😀
  EXPECT_TRUE(ValidateUtf8("ok \xF0\x9F\x98\x80").ok());
  for (std::string bad : {"\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE2\x82", "\x80"}) {
    absl::Status s = ValidateUtf8(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("offset 0"), absl::string_view::npos) << s;
  }
  EXPECT_EQ(Utf8Lossy("a\xE2\x82z"), "a\xEF\xBF\xBDz");
  EXPECT_EQ(IncompleteTailLength("a\xF0\x9F\x98"), 3u);
  EXPECT_EQ(IncompleteTailLength("a\xF0\x9F\x98\x80"), 0u);
}

}  // namespace
}  // namespace tpserve::tokenizer_internal
