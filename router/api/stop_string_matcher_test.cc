#include "router/api/stop_string_matcher.h"

#include <string>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

// Feeds `deltas` one by one and returns everything streamed plus the match.
std::pair<std::string, std::string> Feed(StopStringMatcher& m,
                                         const std::vector<std::string>& deltas) {
  std::string streamed;
  for (const std::string& d : deltas) {
    StopStringMatcher::Result r = m.Append(d);
    streamed += r.text;
    if (r.stopped) return {streamed, r.matched};
  }
  streamed += m.Flush();
  return {streamed, ""};
}

TEST(StopStringMatcherTest, NoStopsPassesEverything) {
  StopStringMatcher m({});
  EXPECT_EQ(m.Append("abc").text, "abc");
  EXPECT_EQ(m.held_bytes(), 0u);
}

TEST(StopStringMatcherTest, MatchAcrossDeltasNeverLeaksPrefix) {
  StopStringMatcher m({"STOP"});
  StopStringMatcher::Result r = m.Append("hello S");
  EXPECT_EQ(r.text, "hello ");
  EXPECT_FALSE(r.stopped);
  r = m.Append("T");
  EXPECT_EQ(r.text, "");
  r = m.Append("OP and more");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(r.matched, "STOP");
  EXPECT_EQ(m.Append("x").text, "");  // nothing after a match
}

TEST(StopStringMatcherTest, ReleasesHeldTextWhenMatchBreaks) {
  StopStringMatcher m({"abc"});
  EXPECT_EQ(m.Append("xa").text, "x");
  EXPECT_EQ(m.Append("b").text, "");
  EXPECT_EQ(m.Append("d").text, "abd");
}

TEST(StopStringMatcherTest, OverlappingCandidatesHoldLongest) {
  StopStringMatcher m({"aab"});
  EXPECT_EQ(m.Append("aa").text, "");
  EXPECT_EQ(m.Append("a").text, "a");  // "aaa": keep "aa"
  StopStringMatcher::Result r = m.Append("b");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "");
}

TEST(StopStringMatcherTest, EarliestOfSeveralWins) {
  StopStringMatcher m({"world", "lo w"});
  auto [text, matched] = Feed(m, {"hel", "lo world"});
  EXPECT_EQ(text, "hel");
  EXPECT_EQ(matched, "lo w");
}

TEST(StopStringMatcherTest, FlushReturnsHeldTextAtEnd) {
  StopStringMatcher m({"\n\n"});
  auto [text, matched] = Feed(m, {"one", "\n"});
  EXPECT_EQ(text, "one\n");
  EXPECT_EQ(matched, "");
}

TEST(StopStringMatcherTest, MultiByteStopKeepsUtf8Boundaries) {
  StopStringMatcher m({"é!"});
  EXPECT_EQ(m.Append("caf\xC3\xA9").text, "caf");
  StopStringMatcher::Result r = m.Append("!");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "");
}

// Every split of the same text streams the same bytes as one delta would.
TEST(StopStringMatcherTest, SplitInvariance) {
  const std::string text = "The answer is 42.\nUser: more";
  for (size_t cut1 = 0; cut1 <= text.size(); ++cut1) {
    for (size_t cut2 = cut1; cut2 <= text.size(); ++cut2) {
      StopStringMatcher m({"\nUser:", "zzz"});
      auto [out, matched] =
          Feed(m, {text.substr(0, cut1), text.substr(cut1, cut2 - cut1), text.substr(cut2)});
      ASSERT_EQ(out, "The answer is 42.") << cut1 << " " << cut2;
      ASSERT_EQ(matched, "\nUser:");
    }
  }
}

}  // namespace
}  // namespace tpserve
