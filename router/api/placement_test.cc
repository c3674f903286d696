// ChooseGroup's rule, case by case (router/api/placement.h).
#include "router/api/placement.h"

#include "gtest/gtest.h"

namespace tpserve {
namespace {

TEST(PlacementTest, NoCandidates) { EXPECT_EQ(ChooseGroup({}, 8), -1); }

TEST(PlacementTest, LongestCachedPrefixWins) {
  EXPECT_EQ(ChooseGroup({{.group = 0, .cached_tokens = 16, .load = 1},
                         {.group = 1, .cached_tokens = 288, .load = 3},
                         {.group = 2, .cached_tokens = 0, .load = 0}},
                        8),
            1);
}

TEST(PlacementTest, TieGoesToLowerLoadThenLowerIndex) {
  EXPECT_EQ(ChooseGroup({{.group = 0, .cached_tokens = 0, .load = 2},
                         {.group = 1, .cached_tokens = 0, .load = 1}},
                        8),
            1);
  EXPECT_EQ(ChooseGroup({{.group = 3, .cached_tokens = 32, .load = 1},
                         {.group = 2, .cached_tokens = 32, .load = 1}},
                        8),
            2);
}

TEST(PlacementTest, MuchBusierCachedGroupLosesToTheIdlestOne) {
  // Imbalance 9 > 8: the idlest group wins despite having no prefix.
  EXPECT_EQ(ChooseGroup({{.group = 0, .cached_tokens = 288, .load = 10},
                         {.group = 1, .cached_tokens = 0, .load = 1}},
                        8),
            1);
  // Imbalance exactly 8: still the cached group.
  EXPECT_EQ(ChooseGroup({{.group = 0, .cached_tokens = 288, .load = 9},
                         {.group = 1, .cached_tokens = 0, .load = 1}},
                        8),
            0);
  // Slack 0: always the idlest group (pure load balancing).
  EXPECT_EQ(ChooseGroup({{.group = 0, .cached_tokens = 288, .load = 2},
                         {.group = 1, .cached_tokens = 0, .load = 1}},
                        0),
            1);
}

TEST(PlacementTest, LoadCountsSequencesQueuedPrefillAndKvUsage) {
  EXPECT_DOUBLE_EQ(GroupLoad(0, 0, 0, 512, 0.0, 64), 0.0);
  EXPECT_DOUBLE_EQ(GroupLoad(3, 2, 1024, 512, 0.0, 64), 7.0);  // 5 seqs + 2 steps of prefill
  EXPECT_DOUBLE_EQ(GroupLoad(0, 0, 0, 512, 0.5, 64), 32.0);    // half the cache in use
}

}  // namespace
}  // namespace tpserve
