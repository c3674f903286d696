#include "router/api/request_validation.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tpserve {
namespace {

using ::testing::HasSubstr;
using ::tpserve::v1::GenerateRequest;

RequestLimits Limits() { return RequestLimits{.vocab_size = 100, .context_length = 64}; }

GenerateRequest Valid() {
  GenerateRequest r;
  r.set_text("hello");
  return r;
}

void ExpectInvalid(const GenerateRequest& r, const std::string& field) {
  absl::Status s = ValidateGenerateRequest(r, Limits());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
  EXPECT_THAT(std::string(s.message()), HasSubstr(field));
}

TEST(RequestValidationTest, AcceptsMinimalAndFullRequests) {
  EXPECT_TRUE(ValidateGenerateRequest(Valid(), Limits()).ok());
  GenerateRequest r = Valid();
  r.mutable_sampling()->set_temperature(0.7f);
  r.mutable_sampling()->set_top_p(1.0f);
  r.mutable_sampling()->set_top_k(40);
  r.mutable_sampling()->set_top_logprobs(5);
  r.set_max_tokens(10);
  r.add_stop("\n");
  r.add_stop_token_ids(3);
  r.set_priority(-5);
  EXPECT_TRUE(ValidateGenerateRequest(r, Limits()).ok());
}

TEST(RequestValidationTest, RejectsEachBadFieldByName) {
  GenerateRequest r;
  ExpectInvalid(r, "prompt");
  r.set_text("");
  ExpectInvalid(r, "text");
  r = GenerateRequest();
  r.mutable_token_ids();
  ExpectInvalid(r, "token_ids.ids");
  r.mutable_token_ids()->add_ids(100);
  ExpectInvalid(r, "token_ids.ids[0]");
  r = GenerateRequest();
  r.mutable_chat();
  ExpectInvalid(r, "chat.messages");
  auto* m = r.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("hi");
  EXPECT_TRUE(ValidateGenerateRequest(r, Limits()).ok());
  r.mutable_chat()->add_messages()->set_role("wizard");
  ExpectInvalid(r, "chat.messages[1].role");

  r = Valid();
  r.set_max_tokens(0);
  ExpectInvalid(r, "max_tokens");
  r.set_max_tokens(-3);
  ExpectInvalid(r, "max_tokens");
  r.set_max_tokens(1 << 30);
  ExpectInvalid(r, "max_tokens");

  r = Valid();
  r.mutable_sampling()->set_temperature(-0.1f);
  ExpectInvalid(r, "sampling.temperature");
  r = Valid();
  r.mutable_sampling()->set_top_p(0.0f);
  ExpectInvalid(r, "sampling.top_p");
  r.mutable_sampling()->set_top_p(1.5f);
  ExpectInvalid(r, "sampling.top_p");
  r = Valid();
  r.mutable_sampling()->set_top_k(-1);
  ExpectInvalid(r, "sampling.top_k");
  r = Valid();
  r.mutable_sampling()->set_min_p(2.0f);
  ExpectInvalid(r, "sampling.min_p");
  r = Valid();
  r.mutable_sampling()->set_repetition_penalty(0.0f);
  ExpectInvalid(r, "sampling.repetition_penalty");
  r = Valid();
  r.mutable_sampling()->set_top_logprobs(21);
  ExpectInvalid(r, "sampling.top_logprobs");

  r = Valid();
  for (int i = 0; i < 9; ++i) r.add_stop("x");
  ExpectInvalid(r, "stop");
  r = Valid();
  r.add_stop("");
  ExpectInvalid(r, "stop[0]");
  r = Valid();
  r.add_stop_token_ids(-1);
  ExpectInvalid(r, "stop_token_ids[0]");
  r = Valid();
  r.set_priority(5000);
  ExpectInvalid(r, "priority");
}

TEST(RequestValidationTest, ResolveMaxTokens) {
  GenerateRequest r = Valid();
  EXPECT_EQ(*ResolveMaxTokens(r, 10, Limits()), 54);  // default 256 capped by room
  r.set_max_tokens(5);
  EXPECT_EQ(*ResolveMaxTokens(r, 10, Limits()), 5);
  r.set_max_tokens(60);
  absl::StatusOr<int32_t> bad = ResolveMaxTokens(r, 10, Limits());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("max_tokens"));
  bad = ResolveMaxTokens(Valid(), 64, Limits());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("prompt has 64 tokens"));
}

TEST(RequestValidationTest, Utf8) {
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xC3\xA9 \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC3"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));  // surrogate
  EXPECT_FALSE(IsValidUtf8("\xFF"));
}

TEST(RequestValidationTest, CheckUtf8FieldsNamesNestedField) {
  GenerateRequest r;
  auto* m = r.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("ok");
  m = r.mutable_chat()->add_messages();
  m->set_role("assistant");
  m->set_content("BAD");
  std::string wire = r.SerializeAsString();
  EXPECT_TRUE(CheckUtf8Fields(*GenerateRequest::descriptor(), wire).ok());
  size_t pos = wire.find("BAD");
  wire[pos] = '\xFF';
  absl::Status s = CheckUtf8Fields(*GenerateRequest::descriptor(), wire);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("chat.messages[1].content"));
  EXPECT_EQ(CheckUtf8Fields(*GenerateRequest::descriptor(), "\xFF\xFF\xFF").code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tpserve
