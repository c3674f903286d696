// Unit tests on a tiny hand-made byte-level vocabulary: bad input becomes a
// clear Status, special tokens, incremental detokenization of split UTF-8.
#include "router/tokenizer/tokenizer.h"

#include "gtest/gtest.h"
#include "router/tokenizer/bpe_model.h"
#include "router/tokenizer/incremental_detokenizer.h"
#include "router/tokenizer/unicode.h"

namespace tpserve {
namespace {

// All 256 byte tokens (ids 0..255), a few merges, and two control tokens.
TokenizerData TinyData() {
  TokenizerData d;
  d.pre_tokenizer = "gpt2";
  for (int b = 0; b < 256; ++b) {
    std::string s;
    tokenizer_internal::AppendUtf8(tokenizer_internal::ByteToCodepoint(b), &s);
    d.tokens.push_back(s);
  }
  d.merges = {"h e", "l l", "he ll", "hell o", "\xC4\xA0 w"};  // Ġ w
  for (const char* t : {"he", "ll", "hell", "hello", "\xC4\xA0w"}) d.tokens.push_back(t);
  d.tokens.push_back("<|im_start|>");
  d.tokens.push_back("<|im_end|>");
  d.token_types.assign(d.tokens.size(), TokenType::kNormal);
  d.token_types[261] = d.token_types[262] = TokenType::kControl;
  d.bos_id = 261;
  d.eos_id = 262;
  d.add_bos = true;
  return d;
}

Tokenizer Tiny() { return *Tokenizer::Create(TinyData()); }

TEST(Tokenizer, EncodesWithMergesAndSpecials) {
  Tokenizer tok = Tiny();
  auto ids = tok.Encode("<|im_start|>hello w<|im_end|>", /*add_special=*/false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{261, 259, 260, 262}));
  auto with_bos = tok.Encode("hello", /*add_special=*/true);
  EXPECT_EQ(*with_bos, (std::vector<int32_t>{261, 259}));
  EXPECT_EQ(*tok.Decode(*ids), "<|im_start|>hello w<|im_end|>");
  EXPECT_EQ(*tok.Decode(*ids, /*skip_special=*/true), "hello w");
  EXPECT_EQ(tok.TokenId("<|im_end|>"), 262);
  EXPECT_EQ(tok.TokenId("nope"), -1);
  EXPECT_EQ(tok.vocab_size(), 263);
}

TEST(Tokenizer, SpecialsAsPlainText) {
  Tokenizer tok = Tiny();
  EncodeOptions o;
  o.parse_special = false;
  auto ids = tok.Encode("<|im_end|>", o);
  ASSERT_TRUE(ids.ok());
  EXPECT_GT(ids->size(), 1u);
  EXPECT_EQ(*tok.Decode(*ids), "<|im_end|>");
}

TEST(Tokenizer, InvalidUtf8IsAClearError) {
  Tokenizer tok = Tiny();
  auto r = tok.Encode("ok\xFFno", false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("offset 2"), absl::string_view::npos) << r.status();
  EXPECT_FALSE(tok.Decode({5, 99999}).ok());
  EXPECT_FALSE(tok.Decode({-1}).ok());
}

TEST(Tokenizer, BadDataIsAnError) {
  TokenizerData d = TinyData();
  d.merges.push_back("x nothere");
  EXPECT_FALSE(Tokenizer::Create(d).ok());
  d = TinyData();
  d.pre_tokenizer = "mystery";
  auto r = Tokenizer::Create(d);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("mystery"), absl::string_view::npos);
  d = TinyData();
  d.eos_id = 100000;
  EXPECT_FALSE(Tokenizer::Create(d).ok());
  EXPECT_FALSE(Tokenizer::Create(TokenizerData{}).ok());
  EXPECT_FALSE(TokenizerDataFromTokenizerJsonText("{not json").ok());
  EXPECT_FALSE(TokenizerDataFromTokenizerJsonText("{\"model\": {\"type\": \"BPE\"}}").ok());
  EXPECT_FALSE(TokenizerDataFromTokenizerJson("/nonexistent/tokenizer.json").ok());
}

TEST(IncrementalDetokenizer, HoldsBackSplitCharacters) {
  Tokenizer tok = Tiny();
  // "é😀" as single-byte tokens: nothing is emitted mid-character.
  std::string text = "\xC3\xA9\xF0\x9F\x98\x80!";
  auto ids = tok.Encode(text, false);
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 7u);
  IncrementalDetokenizer detok(&tok);
  std::vector<std::string> deltas;
  for (int32_t id : *ids) deltas.push_back(*detok.Add(id));
  EXPECT_EQ(deltas,
            (std::vector<std::string>{"", "\xC3\xA9", "", "", "", "\xF0\x9F\x98\x80", "!"}));
  EXPECT_EQ(detok.Finish(), "");
}

TEST(IncrementalDetokenizer, BrokenBytesBecomeReplacementCharacters) {
  Tokenizer tok = Tiny();
  auto byte_id = [&](uint8_t b) {
    std::string s;
    tokenizer_internal::AppendUtf8(tokenizer_internal::ByteToCodepoint(b), &s);
    return tok.TokenId(s);
  };
  IncrementalDetokenizer detok(&tok);
  EXPECT_EQ(*detok.Add(byte_id(0xF0)), "");
  EXPECT_EQ(*detok.Add(byte_id(0x9F)), "");
  EXPECT_EQ(*detok.Add(byte_id('a')),
            "\xEF\xBF\xBD"
            "a");  // F0 9F cannot complete
  EXPECT_EQ(*detok.Add(byte_id(0xFF)), "\xEF\xBF\xBD");
  EXPECT_EQ(*detok.Add(byte_id(0xE2)), "");
  EXPECT_EQ(detok.pending_bytes(), 1u);
  EXPECT_EQ(detok.Finish(), "\xEF\xBF\xBD");
  EXPECT_FALSE(detok.Add(12345).ok());
  IncrementalDetokenizer skip(&tok, /*skip_special=*/true);
  EXPECT_EQ(*skip.Add(262), "");
}

}  // namespace
}  // namespace tpserve
