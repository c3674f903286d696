#include "common/check.h"

#include "gtest/gtest.h"

namespace tpserve {
namespace {

TEST(CheckTest, PassingCheckDoesNothing) {
  int evaluations = 0;
  TPS_CHECK(++evaluations == 1) << "never printed";
  TPS_CHECK_EQ(evaluations, 1);
  TPS_CHECK_LT(1, 2);
}

TEST(CheckDeathTest, FailingCheckAbortsWithMessage) {
  EXPECT_DEATH(TPS_CHECK_EQ(2 + 2, 5) << "arithmetic", "CHECK failed.*arithmetic");
}

}  // namespace
}  // namespace tpserve
