#include "worker/service/step_convert.h"

#include "gtest/gtest.h"

namespace tpserve {
namespace {

TEST(StepConvertTest, RequestFieldsArriveInTheBatch) {
  v1::StepRequest request;
  v1::SequenceInput* in = request.add_seqs();
  in->set_seq_id(7);
  in->add_tokens(1);
  in->add_tokens(2);
  in->set_start_pos(16);
  in->set_prompt_len(18);
  in->add_block_table(4);
  in->add_block_table(9);
  in->set_sample(false);
  v1::WorkerSampling* p = in->mutable_sampling();
  p->set_temperature(0.5f);
  p->set_top_k(3);
  p->set_top_p(0.9f);
  p->set_min_p(0.1f);
  p->set_repetition_penalty(1.2f);
  p->set_presence_penalty(0.3f);
  p->set_frequency_penalty(-0.4f);
  p->set_seed(99);
  p->set_top_logprobs(2);
  p->set_logprobs(true);

  StepBatch batch = ToStepBatch(request);
  ASSERT_EQ(batch.seqs.size(), 1u);
  const SequenceInput& s = batch.seqs[0];
  EXPECT_EQ(s.seq_id, 7u);
  EXPECT_EQ(s.tokens, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(s.start_pos, 16);
  EXPECT_EQ(s.prompt_len, 18);
  EXPECT_EQ(s.block_table, (std::vector<int32_t>{4, 9}));
  EXPECT_FALSE(s.sample);
  EXPECT_FLOAT_EQ(s.sampling.temperature, 0.5f);
  EXPECT_EQ(s.sampling.top_k, 3);
  EXPECT_FLOAT_EQ(s.sampling.top_p, 0.9f);
  EXPECT_FLOAT_EQ(s.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(s.sampling.repetition_penalty, 1.2f);
  EXPECT_FLOAT_EQ(s.sampling.presence_penalty, 0.3f);
  EXPECT_FLOAT_EQ(s.sampling.frequency_penalty, -0.4f);
  EXPECT_EQ(s.sampling.seed, 99u);
  EXPECT_EQ(s.sampling.top_logprobs, 2);
  EXPECT_TRUE(s.sampling.logprobs);
}

TEST(StepConvertTest, OutputTokensArriveInTheResponse) {
  StepOutput out;
  out.tokens.push_back(
      {.seq_id = 3, .token = 42, .logprob = -0.5f, .top_logprobs = {{42, -0.5f}, {7, -1.5f}}});
  v1::StepResponse response;
  FillStepResponse(out, &response);
  ASSERT_EQ(response.tokens_size(), 1);
  EXPECT_EQ(response.tokens(0).seq_id(), 3u);
  EXPECT_EQ(response.tokens(0).token(), 42);
  EXPECT_FLOAT_EQ(response.tokens(0).logprob(), -0.5f);
  ASSERT_EQ(response.tokens(0).top_logprobs_size(), 2);
  EXPECT_EQ(response.tokens(0).top_logprobs(1).token(), 7);
}

}  // namespace
}  // namespace tpserve
