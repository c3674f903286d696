#include "router/scheduler/step_latency.h"

#include <limits>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

TEST(StepLatencyTest, PrefillTokensFitTheTargetLessTheDecodes) {
  // 20 ms at 10,000 tokens/s = 200 tokens, less 8 decodes.
  EXPECT_EQ(PrefillTokensWhileDecoding(absl::Milliseconds(20), 10000, 8), 192);
  // A target the decodes alone exceed still lets prompts move.
  EXPECT_EQ(PrefillTokensWhileDecoding(absl::Milliseconds(1), 1000, 8), kMinPrefillChunk);
  EXPECT_EQ(PrefillTokensWhileDecoding(absl::Hours(1e6), 1e9, 1),
            std::numeric_limits<int32_t>::max());
}

TEST(StepLatencyTest, RateIgnoresShortStepsAndSmooths) {
  PrefillRate rate;
  rate.Observe(10, 0.001);  // too few tokens to say anything
  EXPECT_EQ(rate.tokens_per_second(), 0.0);
  rate.Observe(1000, 1.0);
  EXPECT_DOUBLE_EQ(rate.tokens_per_second(), 1000.0);
  rate.Observe(2000, 1.0);  // one fast step moves it 30% of the way
  EXPECT_DOUBLE_EQ(rate.tokens_per_second(), 1300.0);
  rate.Observe(500, 0.0);  // no duration: ignored
  EXPECT_DOUBLE_EQ(rate.tokens_per_second(), 1300.0);
}

}  // namespace
}  // namespace tpserve
