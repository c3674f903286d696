// Step pipelining: Schedule() for step n+1 while step n is unresolved.
#include <cstdint>
#include <map>
#include <numeric>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "router/kv/block_manager.h"
#include "router/scheduler/fake_worker.h"
#include "router/scheduler/scheduler.h"

namespace tpserve {
namespace {

using ::tpserve::scheduler_testing::FakeWorker;
using ::tpserve::scheduler_testing::ReferenceNextToken;

const absl::Time kNow = absl::FromUnixSeconds(1000);

SchedulerRequest Req(uint64_t id, int32_t len, int32_t first = 1) {
  SchedulerRequest r;
  r.seq_id = id;
  r.prompt.resize(len);
  std::iota(r.prompt.begin(), r.prompt.end(), first);
  return r;
}

TEST(SchedulerPipeliningTest, DecodeTokenIsFilledOnceThePreviousStepResolves) {
  Scheduler sched({.max_num_batched_tokens = 64}, 16, 4);
  FakeWorker worker(16, 4);
  ASSERT_TRUE(sched.Add(Req(1, 4)).ok());
  ScheduledStep step1 = sched.Schedule(kNow);
  ASSERT_TRUE(sched.FinalizeStep(&step1).ok());
  absl::StatusOr<std::vector<SampledTokenId>> out1 = worker.Run(step1);
  ASSERT_TRUE(out1.ok()) << out1.status();

  // Step 2 is prepared while step 1 runs: its decode token is not known yet,
  // but its position and block table are.
  ScheduledStep step2 = sched.Schedule(kNow);
  ASSERT_EQ(step2.seqs.size(), 1u);
  EXPECT_EQ(step2.seqs[0].start_pos, 4);
  EXPECT_EQ(step2.seqs[0].tokens, std::vector<int32_t>{kPendingToken});
  EXPECT_EQ(step2.seqs[0].block_table.size(), 2u);
  EXPECT_EQ(step2.num_pending_tokens, 1);
  EXPECT_EQ(sched.FinalizeStep(&step2).code(), absl::StatusCode::kFailedPrecondition);

  ASSERT_TRUE(sched.OnStepResult(step1.step_id, *out1).ok());
  ASSERT_TRUE(sched.FinalizeStep(&step2).ok());
  ASSERT_EQ(step2.seqs.size(), 1u);
  EXPECT_EQ(step2.seqs[0].tokens, std::vector<int32_t>{(*out1)[0].token});
  EXPECT_EQ(step2.num_pending_tokens, 0);
  absl::StatusOr<std::vector<SampledTokenId>> out2 = worker.Run(step2);
  ASSERT_TRUE(out2.ok()) << out2.status();
  std::vector<int32_t> context = Req(1, 4).prompt;
  context.push_back((*out1)[0].token);
  EXPECT_EQ((*out2)[0].token, ReferenceNextToken(context));
  ASSERT_TRUE(sched.OnStepResult(step2.step_id, *out2).ok());
  ASSERT_TRUE(sched.CheckInvariants().ok());
}

TEST(SchedulerPipeliningTest, SequenceStoppedMeanwhileIsDroppedAndFreed) {
  Scheduler sched({.max_num_batched_tokens = 64}, 16, 4);
  FakeWorker worker(16, 4);
  ASSERT_TRUE(sched.Add(Req(1, 4)).ok());
  ASSERT_TRUE(sched.Add(Req(2, 4, 20)).ok());
  ScheduledStep step1 = sched.Schedule(kNow);
  ASSERT_TRUE(sched.FinalizeStep(&step1).ok());
  absl::StatusOr<std::vector<SampledTokenId>> out1 = worker.Run(step1);
  ASSERT_TRUE(out1.ok());
  ScheduledStep step2 = sched.Schedule(kNow);
  ASSERT_EQ(step2.seqs.size(), 2u);
  ASSERT_TRUE(sched.OnStepResult(step1.step_id, *out1).ok());
  // The router sees eos for sequence 1.
  absl::StatusOr<FinishedSequence> done = sched.Finish(1, FinishReason::kStop);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->num_generated, 1);
  ASSERT_TRUE(sched.FinalizeStep(&step2).ok());
  ASSERT_EQ(step2.seqs.size(), 1u);
  EXPECT_EQ(step2.seqs[0].seq_id, 2u);
  EXPECT_EQ(step2.num_tokens, 1);
  EXPECT_EQ(step2.free_seq_ids, std::vector<uint64_t>{1});
  absl::StatusOr<std::vector<SampledTokenId>> out2 = worker.Run(step2);
  ASSERT_TRUE(out2.ok());
  ASSERT_EQ(out2->size(), 1u);
  ASSERT_TRUE(sched.OnStepResult(step2.step_id, *out2).ok());
  ASSERT_TRUE(sched.CheckInvariants().ok());
}

TEST(SchedulerPipeliningTest, CancelWhileInFlightIgnoresItsResult) {
  Scheduler sched({.max_num_batched_tokens = 64}, 16, 4);
  FakeWorker worker(16, 4);
  ASSERT_TRUE(sched.Add(Req(1, 6)).ok());
  ScheduledStep step1 = sched.Schedule(kNow);
  ASSERT_TRUE(sched.FinalizeStep(&step1).ok());
  absl::StatusOr<std::vector<SampledTokenId>> out1 = worker.Run(step1);
  ASSERT_TRUE(out1.ok());
  ASSERT_TRUE(sched.Cancel(1).ok());
  ScheduledStep step2 = sched.Schedule(kNow);
  EXPECT_TRUE(step2.empty());
  ASSERT_EQ(step2.finished.size(), 1u);
  EXPECT_EQ(step2.finished[0].reason, FinishReason::kCancelled);
  EXPECT_EQ(sched.metrics().kv_cache_usage_ratio, 0.0);
  // Step 1's late result for the cancelled sequence is accepted and ignored.
  ASSERT_TRUE(sched.OnStepResult(step1.step_id, *out1).ok());
  EXPECT_FALSE(sched.Contains(1));
  ASSERT_TRUE(sched.CheckInvariants().ok());
}

TEST(SchedulerPipeliningDeathTest, AtMostOneUnresolvedStepAhead) {
  Scheduler sched({.max_num_batched_tokens = 64}, 16, 4);
  ASSERT_TRUE(sched.Add(Req(1, 4)).ok());
  ScheduledStep step1 = sched.Schedule(kNow);
  ScheduledStep step2 = sched.Schedule(kNow);
  ASSERT_FALSE(step2.empty());
  EXPECT_DEATH(sched.Schedule(kNow), "two unresolved steps");
}

// Runs the same workload serially and pipelined: every request's output is
// the reference model's, in both modes.
std::map<uint64_t, std::vector<int32_t>> RunWorkload(bool pipelined) {
  const int32_t kBlocks = 24, kBlockSize = 4;
  Scheduler sched({.max_num_batched_tokens = 16, .max_num_seqs = 4}, kBlocks, kBlockSize);
  FakeWorker worker(kBlocks, kBlockSize);
  for (uint64_t id = 1; id <= 8; ++id) {
    EXPECT_TRUE(sched.Add(Req(id, 3 + 2 * id, 7 * id)).ok());
  }
  std::map<uint64_t, std::vector<int32_t>> outputs;
  auto resolve = [&](const ScheduledStep& step, const std::vector<SampledTokenId>& out) {
    EXPECT_TRUE(sched.OnStepResult(step.step_id, out).ok());
    for (const SampledTokenId& t : out) {
      if (!sched.Contains(t.seq_id)) continue;
      outputs[t.seq_id].push_back(t.token);
      if (outputs[t.seq_id].size() == 6) {
        EXPECT_TRUE(sched.Finish(t.seq_id, FinishReason::kLength).ok());
      }
    }
  };
  ScheduledStep cur;
  std::vector<SampledTokenId> cur_out;
  for (int iter = 0; iter < 400 && (sched.HasWork() || !cur.empty()); ++iter) {
    ScheduledStep next = sched.Schedule(kNow);  // pipelined: step `cur` is in flight
    if (!cur.empty()) resolve(cur, cur_out);
    EXPECT_TRUE(sched.FinalizeStep(&next).ok());
    absl::StatusOr<std::vector<SampledTokenId>> out = worker.Run(next);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) break;
    cur = std::move(next);
    cur_out = *out;
    if (!pipelined) {
      resolve(cur, cur_out);
      cur = ScheduledStep();
      cur_out.clear();
    }
    EXPECT_TRUE(sched.CheckInvariants().ok());
  }
  EXPECT_FALSE(sched.HasWork());
  EXPECT_EQ(sched.metrics().kv_cache_usage_ratio, 0.0);
  return outputs;
}

TEST(SchedulerPipeliningTest, PipelinedOutputsEqualSerialAndReference) {
  std::map<uint64_t, std::vector<int32_t>> serial = RunWorkload(false);
  std::map<uint64_t, std::vector<int32_t>> pipelined = RunWorkload(true);
  EXPECT_EQ(serial, pipelined);
  ASSERT_EQ(serial.size(), 8u);
  for (const auto& [id, out] : serial) {
    std::vector<int32_t> context = Req(id, 3 + 2 * id, 7 * id).prompt;
    ASSERT_EQ(out.size(), 6u);
    for (int32_t token : out) {
      EXPECT_EQ(token, ReferenceNextToken(context)) << "sequence " << id;
      context.push_back(token);
    }
  }
}

}  // namespace
}  // namespace tpserve
