// Hostile chat templates (the template comes from the model file): each is
// refused by ChatTemplate::FromModel with a message naming the problem, in
// bounded time, without a crash or a stack overflow.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "router/tokenizer/chat_template.h"

namespace tpserve {
namespace {

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// Loads `source`, expects a refusal containing `expected`, within `limit`.
void ExpectRefused(const std::string& source, const std::string& expected,
                   absl::Duration limit = absl::Seconds(5)) {
  const absl::Time start = absl::Now();
  absl::StatusOr<ChatTemplate> t = ChatTemplate::FromModel(source, "<s>", "</s>");
  const absl::Duration took = absl::Now() - start;
  ASSERT_FALSE(t.ok()) << source.substr(0, 200);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find(expected), std::string::npos) << t.status().message();
  EXPECT_LT(took, limit) << source.substr(0, 200);
}

TEST(ChatTemplateLimitsTest, EndlessLoopsAreRefusedAtLoad) {
  ExpectRefused(
      "{% for a in range(1000000) %}{% for b in range(1000000) %}{% for c in range(1000000) %}"
      "{{ a }}{% endfor %}{% endfor %}{% endfor %}",
      "refused");
  ExpectRefused(
      "{% for a in range(1000000) %}{% for b in range(1000000) %}{% endfor %}{% endfor %}",
      "does not end");
}

TEST(ChatTemplateLimitsTest, ExplodingOutputIsRefusedAtLoad) {
  ExpectRefused("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "refused");
  ExpectRefused(
      "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
      "{% endfor %}{{ ns.s }}",
      "refused");
}

TEST(ChatTemplateLimitsTest, TenThousandLevelsOfNestingAreRefused) {
  const int kLevels = 10'000;
  const std::string nests[] = {
      Repeat("{% if true %}", kLevels) + "x" + Repeat("{% endif %}", kLevels),
      Repeat("{% for m in messages %}", kLevels) + "x" + Repeat("{% endfor %}", kLevels),
      "{{ " + Repeat("(", kLevels) + "1" + Repeat(")", kLevels) + " }}",
      "{{ " + Repeat("[", kLevels) + Repeat("]", kLevels) + " }}",
      "{{ " + Repeat("{'a': ", kLevels) + "1" + Repeat("}", kLevels) + " }}",
      "{{ " + Repeat("not ", kLevels) + "true }}",
      "{{ " + Repeat("-", kLevels) + "1 }}",
      "{{ messages" + Repeat("[0]", kLevels) + " }}",
      "{{ messages" + Repeat(".content", kLevels) + " }}",
      "{{ 'a'" + Repeat(" | trim", kLevels) + " }}",
      "{{ 1" + Repeat(" + 1", kLevels) + " }}",
      "{{ " + Repeat("range(", kLevels) + "1" + Repeat(")", kLevels) + " }}",
  };
  for (const std::string& source : nests) {
    const absl::Time start = absl::Now();
    absl::StatusOr<ChatTemplate> t = ChatTemplate::FromModel(source, "<s>", "</s>");
    EXPECT_FALSE(t.ok()) << source.substr(0, 80);
    EXPECT_LT(absl::Now() - start, absl::Seconds(2)) << source.substr(0, 80);
  }
}

TEST(ChatTemplateLimitsTest, OrdinaryTemplatesPassTheLoadProbe) {
  for (const char* name : {"chatml", "llama3", "llama2", "mistral"}) {
    auto t = ChatTemplate::FromModel(ChatTemplate::BuiltinSource(name), "<s>", "</s>");
    EXPECT_TRUE(t.ok()) << name << ": " << t.status();
  }
  // A template that rejects the probe conversation is not refused for that:
  // only a runaway render is.
  auto strict = ChatTemplate::FromModel(
      "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
      "{% for m in messages %}{{ m['content'] }}{% endfor %}",
      "", "");
  EXPECT_TRUE(strict.ok()) << strict.status();
}

}  // namespace
}  // namespace tpserve
