#include "worker/engine/sampler.h"

#include <cmath>
#include <map>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

int32_t Sample(const std::vector<float>& logits, const SamplingParams& p,
               const TokenHistory& h = {}, int64_t pos = 0) {
  absl::StatusOr<SampledToken> t = SampleToken(logits, p, h, pos);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? t->token : -1;
}

TEST(SamplerTest, GreedyIsArgmaxWithLowestIdOnTies) {
  SamplingParams p;
  EXPECT_EQ(Sample({0.1f, 3.0f, -2.0f, 1.0f}, p), 1);
  EXPECT_EQ(Sample({5.0f, 1.0f, 5.0f}, p), 0);
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedsDiffer) {
  std::vector<float> logits(100);
  for (int i = 0; i < 100; ++i) logits[i] = std::sin(i * 0.7f);
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 1234;
  std::vector<int32_t> a, b, c;
  for (int pos = 0; pos < 64; ++pos) {
    a.push_back(Sample(logits, p, {}, pos));
    b.push_back(Sample(logits, p, {}, pos));
  }
  p.seed = 99;
  for (int pos = 0; pos < 64; ++pos) c.push_back(Sample(logits, p, {}, pos));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(SamplerTest, DrawsFollowTheDistribution) {
  // softmax([log .5, log .3, log .2]) = [.5, .3, .2]
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 7;
  std::map<int32_t, int> n;
  const int draws = 20000;
  for (int pos = 0; pos < draws; ++pos) ++n[Sample(logits, p, {}, pos)];
  EXPECT_NEAR(n[0] / double(draws), 0.5, 0.02);
  EXPECT_NEAR(n[1] / double(draws), 0.3, 0.02);
  EXPECT_NEAR(n[2] / double(draws), 0.2, 0.02);
}

TEST(SamplerTest, TopKTopPMinPTruncate) {
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplingParams p;
  p.temperature = 1.0f;
  std::map<int32_t, int> topk1, topp, minp;
  for (int pos = 0; pos < 2000; ++pos) {
    p.seed = 1;
    p.top_k = 1;
    ++topk1[Sample(logits, p, {}, pos)];
    p.top_k = 0;
    p.top_p = 0.6f;  // .5 < .6 <= .8: tokens 0 and 1
    ++topp[Sample(logits, p, {}, pos)];
    p.top_p = 1.0f;
    p.min_p = 0.5f;  // keep p >= .25: tokens 0 and 1
    ++minp[Sample(logits, p, {}, pos)];
    p.min_p = 0.0f;
  }
  EXPECT_EQ(topk1[0], 2000);
  EXPECT_EQ(topp[2], 0);
  EXPECT_GT(topp[1], 0);
  EXPECT_EQ(minp[2], 0);
  EXPECT_GT(minp[1], 0);
}

TEST(SamplerTest, RepetitionPenaltyCoversPromptAndOutput) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  // Token 0 in the prompt: 2.0 -> 1.0, so token 1 (1.9) wins.
  EXPECT_EQ(Sample({2.0f, 1.9f, -1.0f}, p, {.prompt = {0}, .output = {}}), 1);
  // Token 0 in the output: same.
  EXPECT_EQ(Sample({2.0f, 1.9f, -1.0f}, p, {.prompt = {}, .output = {0}}), 1);
  // Negative logits are multiplied: -0.5 -> -1.0 loses to -0.9.
  EXPECT_EQ(Sample({-0.5f, -0.9f}, p, {.prompt = {0}, .output = {}}), 1);
}

TEST(SamplerTest, PresenceAndFrequencyCoverOutputOnly) {
  SamplingParams p;
  p.frequency_penalty = 0.4f;
  // Token 0 twice in the output: 2.0 - 0.8 = 1.2 < 1.5.
  EXPECT_EQ(Sample({2.0f, 1.5f}, p, {.prompt = {}, .output = {0, 0}}), 1);
  // Once: 1.6 > 1.5.
  EXPECT_EQ(Sample({2.0f, 1.5f}, p, {.prompt = {}, .output = {0}}), 0);
  // In the prompt only: no penalty.
  EXPECT_EQ(Sample({2.0f, 1.5f}, p, {.prompt = {0, 0, 0}, .output = {}}), 0);
  p.frequency_penalty = 0.0f;
  p.presence_penalty = 0.6f;  // once, however many times: 2.0 - 0.6 = 1.4 < 1.5
  EXPECT_EQ(Sample({2.0f, 1.5f}, p, {.prompt = {}, .output = {0}}), 1);
  EXPECT_EQ(Sample({2.0f, 1.5f}, p, {.prompt = {0}, .output = {}}), 0);
}

TEST(SamplerTest, LogprobsAreLogSoftmaxWithTopAlternatives) {
  std::vector<float> logits = {1.0f, 3.0f, 2.0f, -1.0f};
  SamplingParams p;
  p.logprobs = true;
  p.top_logprobs = 3;
  absl::StatusOr<SampledToken> t = SampleToken(logits, p, {}, 0);
  ASSERT_TRUE(t.ok());
  double z = 0;
  for (float l : logits) z += std::exp(l);
  EXPECT_EQ(t->token, 1);
  EXPECT_NEAR(t->logprob, 3.0 - std::log(z), 1e-5);
  ASSERT_EQ(t->top_logprobs.size(), 3u);
  EXPECT_EQ(t->top_logprobs[0].token, 1);
  EXPECT_EQ(t->top_logprobs[1].token, 2);
  EXPECT_EQ(t->top_logprobs[2].token, 0);
  EXPECT_NEAR(t->top_logprobs[2].logprob, 1.0 - std::log(z), 1e-5);
  // With temperature the logprobs follow the scaled logits.
  p.temperature = 2.0f;
  t = SampleToken(logits, p, {}, 0);
  ASSERT_TRUE(t.ok());
  double z2 = 0;
  for (float l : logits) z2 += std::exp(l / 2);
  EXPECT_NEAR(t->top_logprobs[0].logprob, 1.5 - std::log(z2), 1e-5);
}

TEST(SamplerTest, BadParametersAreInvalidArgument) {
  std::vector<float> logits = {1.0f, 2.0f};
  auto code = [&](SamplingParams p) { return SampleToken(logits, p, {}, 0).status().code(); };
  SamplingParams p;
  p.temperature = -1.0f;
  EXPECT_EQ(code(p), absl::StatusCode::kInvalidArgument);
  p = {};
  p.top_p = 0.0f;
  EXPECT_EQ(code(p), absl::StatusCode::kInvalidArgument);
  p = {};
  p.min_p = 1.5f;
  EXPECT_EQ(code(p), absl::StatusCode::kInvalidArgument);
  p = {};
  p.repetition_penalty = 0.0f;
  EXPECT_EQ(code(p), absl::StatusCode::kInvalidArgument);
  p = {};
  p.top_logprobs = 21;
  EXPECT_EQ(code(p), absl::StatusCode::kInvalidArgument);
  p = {};
  p.top_k = -1;
  EXPECT_EQ(code(p), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tpserve
