#include "router/scheduler/scheduler.h"

#include <atomic>
#include <cstdint>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "router/kv/block_manager.h"
#include "router/scheduler/fake_worker.h"
#include "router/scheduler/step_latency.h"

namespace tpserve {
namespace {

using ::tpserve::scheduler_testing::FakeWorker;
using ::tpserve::scheduler_testing::ReferenceNextToken;

const absl::Time kNow = absl::FromUnixSeconds(1000);

std::vector<int32_t> Prompt(int32_t n, int32_t start = 1) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

SchedulerRequest Req(uint64_t id, std::vector<int32_t> prompt, int32_t priority = 0) {
  SchedulerRequest r;
  r.seq_id = id;
  r.prompt = std::move(prompt);
  r.priority = priority;
  return r;
}

// Non-pipelined driver: schedule, run on the fake worker, resolve.
class Harness {
 public:
  Harness(SchedulerConfig config, int32_t num_blocks, int32_t block_size)
      : sched(config, num_blocks, block_size), worker(num_blocks, block_size) {}

  ScheduledStep Step(absl::Time now = kNow) {
    ScheduledStep step = sched.Schedule(now);
    EXPECT_TRUE(sched.FinalizeStep(&step).ok());
    absl::StatusOr<std::vector<SampledTokenId>> out = worker.Run(step);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) return step;
    for (const SampledTokenId& t : *out) outputs[t.seq_id].push_back(t.token);
    EXPECT_TRUE(sched.OnStepResult(step.step_id, *out).ok());
    absl::Status inv = sched.CheckInvariants();
    EXPECT_TRUE(inv.ok()) << inv;
    return step;
  }

  Scheduler sched;
  FakeWorker worker;
  std::map<uint64_t, std::vector<int32_t>> outputs;
};

const ScheduledSequence* Find(const ScheduledStep& step, uint64_t id) {
  for (const ScheduledSequence& s : step.seqs) {
    if (s.seq_id == id) return &s;
  }
  return nullptr;
}

TEST(SchedulerTest, ChunkedPrefillRespectsBudgetAndPositions) {
  Harness h({.max_num_batched_tokens = 8}, 64, 4);
  const std::vector<int32_t> prompt = Prompt(20);
  ASSERT_TRUE(h.sched.Add(Req(1, prompt)).ok());
  for (int32_t start : {0, 8, 16}) {
    ScheduledStep step = h.Step();
    ASSERT_EQ(step.seqs.size(), 1u);
    const ScheduledSequence& s = step.seqs[0];
    EXPECT_EQ(s.start_pos, start);
    EXPECT_LE(step.num_tokens, 8);
    const int32_t n = std::min(8, 20 - start);
    EXPECT_EQ(s.tokens, std::vector<int32_t>(prompt.begin() + start, prompt.begin() + start + n));
    EXPECT_EQ(s.sample, start + n == 20);
    EXPECT_EQ(s.prompt_len, 20);
    EXPECT_EQ(static_cast<int32_t>(s.block_table.size()), (start + n + 3) / 4);
    EXPECT_EQ(step.num_prefill_tokens, n);
  }
  // Decode: position 20, the token sampled from the whole prompt.
  ScheduledStep step = h.Step();
  ASSERT_EQ(step.seqs.size(), 1u);
  EXPECT_EQ(step.seqs[0].start_pos, 20);
  EXPECT_EQ(step.seqs[0].tokens, std::vector<int32_t>{ReferenceNextToken(prompt)});
  EXPECT_EQ(step.num_prefill_tokens, 0);
  EXPECT_EQ(h.sched.metrics().iteration_tokens_total, 21);
}

TEST(SchedulerTest, DecodeFirstThenPrefillWithTheRest) {
  Harness h({.max_num_batched_tokens = 4}, 64, 4);
  ASSERT_TRUE(h.sched.Add(Req(1, Prompt(3))).ok());
  h.Step();  // 1 prefilled
  // 2 arrives with higher priority, but 1's decode still goes first.
  ASSERT_TRUE(h.sched.Add(Req(2, Prompt(10, 50), /*priority=*/5)).ok());
  ScheduledStep step = h.Step();
  ASSERT_EQ(step.seqs.size(), 2u);
  EXPECT_EQ(step.seqs[0].seq_id, 1u);
  EXPECT_EQ(step.seqs[0].tokens.size(), 1u);
  EXPECT_EQ(step.seqs[1].seq_id, 2u);
  EXPECT_EQ(step.seqs[1].tokens.size(), 3u);
  EXPECT_FALSE(step.seqs[1].sample);
  EXPECT_EQ(step.num_tokens, 4);
  step = h.Step();
  EXPECT_EQ(step.seqs[0].seq_id, 1u);  // decode
  EXPECT_EQ(step.seqs[1].seq_id, 2u);
  EXPECT_EQ(step.seqs[1].start_pos, 3);
}

// With target_step_latency, a long prompt arriving while another sequence
// decodes is prefilled in chunks that fit the target next to the decode;
// without decodes it takes the whole token budget.
TEST(SchedulerTest, TargetStepLatencyChunksPrefillNextToDecodes) {
  // 20 ms at 2,000 tokens/s: 40 tokens per step, so 39 prefill + 1 decode.
  Harness h({.max_num_batched_tokens = 512,
             .target_step_latency = absl::Milliseconds(20),
             .prefill_tokens_per_second = 2000},
            256, 4);
  ASSERT_TRUE(h.sched.Add(Req(1, Prompt(300))).ok());
  EXPECT_EQ(h.Step().num_prefill_tokens, 300);  // nothing decodes: no cap
  ASSERT_TRUE(h.sched.Add(Req(2, Prompt(100, 500))).ok());
  int32_t prefilled = 0;
  while (prefilled < 100) {
    ScheduledStep step = h.Step();
    const ScheduledSequence* decode = Find(step, 1);
    ASSERT_NE(decode, nullptr);
    EXPECT_EQ(decode->tokens.size(), 1u);  // never starved
    EXPECT_LE(step.num_prefill_tokens, 39);
    EXPECT_GT(step.num_prefill_tokens, 0);
    prefilled += step.num_prefill_tokens;
  }
  EXPECT_EQ(prefilled, 100);
}

// Without a configured rate the scheduler measures its own steps: a
// 200-token step that takes >= 50 ms gives <= 4,000 tokens/s, so a 10 ms
// target allows <= 40 tokens per step (at least kMinPrefillChunk).
TEST(SchedulerTest, TargetStepLatencyUsesTheMeasuredRate) {
  Scheduler sched({.max_num_batched_tokens = 512, .target_step_latency = absl::Milliseconds(10)},
                  256, 4);
  FakeWorker worker(256, 4);
  auto run = [&](absl::Duration extra) {
    ScheduledStep step = sched.Schedule(kNow);
    EXPECT_TRUE(sched.FinalizeStep(&step).ok());
    absl::StatusOr<std::vector<SampledTokenId>> out = worker.Run(step);
    EXPECT_TRUE(out.ok());
    absl::SleepFor(extra);
    EXPECT_TRUE(sched.OnStepResult(step.step_id, *out).ok());
    return step;
  };
  ASSERT_TRUE(sched.Add(Req(1, Prompt(200))).ok());
  EXPECT_EQ(run(absl::Milliseconds(50)).num_prefill_tokens, 200);
  ASSERT_TRUE(sched.Add(Req(2, Prompt(300, 500))).ok());
  const ScheduledStep step = run(absl::ZeroDuration());
  EXPECT_GE(step.num_prefill_tokens, kMinPrefillChunk);
  EXPECT_LE(step.num_prefill_tokens, 40);
  EXPECT_NE(Find(step, 1), nullptr);
}

TEST(SchedulerTest, MaxNumSeqsCapsTheBatchAndRunningSet) {
  Harness h({.max_num_batched_tokens = 100, .max_num_seqs = 2}, 64, 4);
  for (uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(h.sched.Add(Req(id, Prompt(2))).ok());
  ScheduledStep step = h.Step();
  EXPECT_EQ(step.seqs.size(), 2u);
  EXPECT_EQ(h.sched.num_running(), 2);
  EXPECT_EQ(h.sched.num_waiting(), 1);
  ASSERT_TRUE(h.sched.Finish(1, FinishReason::kStop).ok());
  step = h.Step();
  EXPECT_NE(Find(step, 3), nullptr);
  EXPECT_EQ(step.free_seq_ids, std::vector<uint64_t>{1});
}

TEST(SchedulerTest, PriorityHighFirstFifoWithin) {
  Harness h({.max_num_batched_tokens = 100, .max_num_seqs = 1}, 64, 4);
  ASSERT_TRUE(h.sched.Add(Req(1, Prompt(2), 0)).ok());
  ASSERT_TRUE(h.sched.Add(Req(2, Prompt(2), 5)).ok());
  ASSERT_TRUE(h.sched.Add(Req(3, Prompt(2), 5)).ok());
  ASSERT_TRUE(h.sched.Add(Req(4, Prompt(2), -1)).ok());
  std::vector<uint64_t> order;
  for (int i = 0; i < 4; ++i) {
    ScheduledStep step = h.Step();
    ASSERT_EQ(step.seqs.size(), 1u);
    order.push_back(step.seqs[0].seq_id);
    ASSERT_TRUE(h.sched.Finish(step.seqs[0].seq_id, FinishReason::kStop).ok());
  }
  EXPECT_EQ(order, (std::vector<uint64_t>{2, 3, 1, 4}));
}

TEST(SchedulerTest, BoundedWaitingQueueAndValidation) {
  Harness h({.max_num_batched_tokens = 100, .max_waiting = 2, .max_model_len = 16}, 64, 4);
  ASSERT_TRUE(h.sched.Add(Req(1, Prompt(2))).ok());
  ASSERT_TRUE(h.sched.Add(Req(2, Prompt(2))).ok());
  absl::Status full = h.sched.Add(Req(3, Prompt(2)));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_EQ(h.sched.Add(Req(1, Prompt(2))).code(), absl::StatusCode::kAlreadyExists);
  h.Step();  // both admitted: the queue has room again
  EXPECT_TRUE(h.sched.Add(Req(3, Prompt(2))).ok());
  EXPECT_EQ(h.sched.Add(Req(4, {})).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(h.sched.Add(Req(5, Prompt(16))).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(h.sched.Add(Req(6, Prompt(15))).ok() ||
              h.sched.num_waiting() == 2);  // may be full; never invalid
}

// 6 blocks of 4 tokens: two sequences of 8-token prompts take 4 blocks;
// decoding grows both until the later one is preempted. It then re-prefills
// prompt + generated tokens (from position 0 without prefix caching, from its
// own cached full blocks with it) and its output matches the reference model.
void RunPreemptionScenario(bool prefix_cache) {
  Harness h({.max_num_batched_tokens = 64, .enable_prefix_cache = prefix_cache}, 6, 4);
  ASSERT_TRUE(h.sched.Add(Req(1, Prompt(8, 10))).ok());
  ASSERT_TRUE(h.sched.Add(Req(2, Prompt(8, 30))).ok());
  bool preempted = false;
  for (int i = 0; i < 12 && !preempted; ++i) {
    ScheduledStep step = h.Step();
    for (uint64_t id : step.free_seq_ids) {
      EXPECT_EQ(id, 2u);  // the most recent arrival goes
      preempted = true;
    }
  }
  ASSERT_TRUE(preempted);
  EXPECT_EQ(h.sched.metrics().num_preemptions_total, 1);
  EXPECT_EQ(h.sched.num_waiting(), 1);
  const size_t generated_2 = h.outputs[2].size();
  ASSERT_GT(generated_2, 0u);
  // Let 1 finish; 2 re-prefills prompt + its generated tokens.
  ASSERT_TRUE(h.sched.Finish(1, FinishReason::kStop).ok());
  ScheduledStep step = h.Step();
  const ScheduledSequence* s = Find(step, 2);
  ASSERT_NE(s, nullptr);
  std::vector<int32_t> full = Prompt(8, 30);
  full.insert(full.end(), h.outputs[2].begin(), h.outputs[2].begin() + generated_2);
  if (prefix_cache) {
    EXPECT_GT(s->start_pos, 0);
    EXPECT_EQ(s->start_pos % 4, 0);
  } else {
    EXPECT_EQ(s->start_pos, 0);
  }
  EXPECT_EQ(s->prompt_len, 8);
  EXPECT_EQ(s->tokens, std::vector<int32_t>(full.begin() + s->start_pos, full.end()));
  EXPECT_TRUE(s->sample);
  // Keep going: the output equals the fake model's reference throughout.
  for (int i = 0; i < 4; ++i) h.Step();
  std::vector<int32_t> context = Prompt(8, 30);
  ASSERT_EQ(h.outputs[2].size(), generated_2 + 5);
  for (int32_t token : h.outputs[2]) {
    EXPECT_EQ(token, ReferenceNextToken(context));
    context.push_back(token);
  }
}

TEST(SchedulerTest, PreemptionByRecomputeResumesCorrectly) { RunPreemptionScenario(false); }

TEST(SchedulerTest, PreemptionResumesFromItsOwnCachedBlocks) { RunPreemptionScenario(true); }

TEST(SchedulerTest, HigherPriorityArrivalPreemptsLowerPriorityRunning) {
  Harness h({.max_num_batched_tokens = 64}, 4, 4);
  ASSERT_TRUE(h.sched.Add(Req(1, Prompt(12), /*priority=*/0)).ok());
  h.Step();  // 3 blocks
  ASSERT_TRUE(h.sched.Add(Req(2, Prompt(8), /*priority=*/1)).ok());
  ScheduledStep step = h.Step();
  EXPECT_EQ(Find(step, 1), nullptr);
  ASSERT_NE(Find(step, 2), nullptr);
  EXPECT_EQ(step.free_seq_ids, std::vector<uint64_t>{1});
  EXPECT_EQ(h.sched.metrics().num_preemptions_total, 1);
  // Same priority does not preempt: 3 waits.
  ASSERT_TRUE(h.sched.Add(Req(3, Prompt(12), /*priority=*/1)).ok());
  step = h.Step();
  EXPECT_EQ(Find(step, 3), nullptr);
  EXPECT_EQ(h.sched.metrics().num_preemptions_total, 1);
}

TEST(SchedulerTest, NoPreemptionThatCouldNotMakeRoom) {
  Harness h({.max_num_batched_tokens = 64}, 8, 4);
  ASSERT_TRUE(h.sched.Add(Req(1, Prompt(12), /*priority=*/5)).ok());
  ASSERT_TRUE(h.sched.Add(Req(2, Prompt(8), /*priority=*/0)).ok());
  h.Step();  // 1: 3 blocks, 2: 2 blocks; their decodes next take one more each
  // 3 outranks 2 (not 1) and needs 6 blocks: 1 free + 2's 3 would not do.
  ASSERT_TRUE(h.sched.Add(Req(3, Prompt(21, 100), /*priority=*/2)).ok());
  ScheduledStep step = h.Step();
  EXPECT_EQ(Find(step, 3), nullptr);
  EXPECT_NE(Find(step, 2), nullptr);
  EXPECT_EQ(h.sched.metrics().num_preemptions_total, 0);
}

TEST(SchedulerTest, CancelFreesBlocksAtNextSchedule) {
  Harness h({.max_num_batched_tokens = 64}, 16, 4);
  ASSERT_TRUE(h.sched.Add(Req(1, Prompt(10))).ok());
  ASSERT_TRUE(h.sched.Add(Req(2, Prompt(5))).ok());
  h.Step();
  EXPECT_GT(h.sched.metrics().kv_cache_usage_ratio, 0.0);
  ASSERT_TRUE(h.sched.Cancel(1).ok());
  ASSERT_TRUE(h.sched.Cancel(2).ok());
  EXPECT_EQ(h.sched.Cancel(3).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(h.sched.Contains(1));  // takes effect at the next step
  ScheduledStep step = h.Step();
  EXPECT_TRUE(step.empty());
  ASSERT_EQ(step.finished.size(), 2u);
  for (const FinishedSequence& f : step.finished) {
    EXPECT_EQ(f.reason, FinishReason::kCancelled);
    EXPECT_EQ(f.num_generated, 1);
  }
  EXPECT_EQ(step.free_seq_ids.size(), 2u);
  EXPECT_EQ(h.sched.metrics().kv_cache_usage_ratio, 0.0);
  EXPECT_FALSE(h.sched.HasWork());
}

TEST(SchedulerTest, DeadlineExpiresWaitingAndRunning) {
  Harness h({.max_num_batched_tokens = 64, .max_num_seqs = 1}, 16, 4);
  SchedulerRequest a = Req(1, Prompt(4));
  a.deadline = kNow + absl::Seconds(1);
  SchedulerRequest b = Req(2, Prompt(4));
  b.deadline = kNow + absl::Seconds(1);
  ASSERT_TRUE(h.sched.Add(a).ok());
  ASSERT_TRUE(h.sched.Add(b).ok());
  h.Step(kNow);  // 1 running, 2 waiting
  ScheduledStep step = h.Step(kNow + absl::Seconds(2));
  EXPECT_TRUE(step.empty());
  ASSERT_EQ(step.finished.size(), 2u);
  EXPECT_EQ(step.finished[0].reason, FinishReason::kDeadline);
  EXPECT_EQ(step.finished[1].reason, FinishReason::kDeadline);
  EXPECT_EQ(step.free_seq_ids, std::vector<uint64_t>{1});  // 2 never reached workers
  EXPECT_EQ(h.sched.metrics().kv_cache_usage_ratio, 0.0);
  EXPECT_EQ(std::string(FinishReasonName(FinishReason::kDeadline)), "deadline");
}

TEST(SchedulerTest, PrefixCacheSkipsCachedPromptBlocks) {
  Harness h({.max_num_batched_tokens = 64}, 32, 4);
  const std::vector<int32_t> prompt = Prompt(10);
  ASSERT_TRUE(h.sched.Add(Req(1, prompt)).ok());
  h.Step();
  h.Step();
  // Same prompt while 1 still runs: blocks 0 and 1 are shared.
  ASSERT_TRUE(h.sched.Add(Req(2, prompt)).ok());
  ScheduledStep step = h.Step();
  const ScheduledSequence* s2 = Find(step, 2);
  const ScheduledSequence* s1 = Find(step, 1);
  ASSERT_NE(s2, nullptr);
  ASSERT_NE(s1, nullptr);
  EXPECT_EQ(s2->start_pos, 8);
  EXPECT_EQ(s2->tokens, (std::vector<int32_t>{9, 10}));
  EXPECT_EQ(s2->block_table[0], s1->block_table[0]);
  EXPECT_EQ(s2->block_table[1], s1->block_table[1]);
  EXPECT_NE(s2->block_table[2], s1->block_table[2]);
  SchedulerMetrics m = h.sched.metrics();
  EXPECT_EQ(m.prefix_cache_queries_total, 20);
  EXPECT_EQ(m.prefix_cache_hits_total, 8);
  // 1 holds 12 tokens (3 blocks), 2 adds one block of its own.
  EXPECT_EQ(h.sched.block_manager().stats().num_used_blocks, 3 + 1);
  h.Step();
  // Same output as the uncached run.
  EXPECT_EQ(h.outputs[2][0], h.outputs[1][0]);
  absl::StatusOr<FinishedSequence> f2 = h.sched.Finish(2, FinishReason::kStop);
  ASSERT_TRUE(f2.ok());
  EXPECT_EQ(f2->cached_tokens, 8);
  EXPECT_EQ(f2->num_generated, 2);
  ASSERT_TRUE(h.sched.Finish(1, FinishReason::kStop).ok());
  EXPECT_EQ(h.sched.metrics().kv_cache_usage_ratio, 0.0);
  EXPECT_EQ(h.sched.Finish(1, FinishReason::kStop).status().code(), absl::StatusCode::kNotFound);
}

TEST(SchedulerTest, ReachingMaxModelLenFinishesWithLength) {
  Harness h({.max_num_batched_tokens = 64, .max_model_len = 6}, 16, 4);
  ASSERT_TRUE(h.sched.Add(Req(1, Prompt(4))).ok());
  h.Step();  // prefill -> 5 tokens
  h.Step();  // decode -> 6 tokens
  ScheduledStep step = h.Step();
  EXPECT_TRUE(step.empty());
  ASSERT_EQ(step.finished.size(), 1u);
  EXPECT_EQ(step.finished[0].reason, FinishReason::kLength);
  EXPECT_EQ(step.finished[0].num_generated, 2);
}

TEST(SchedulerTest, RejectsMismatchedResults) {
  Scheduler sched({}, 16, 4);
  ASSERT_TRUE(sched.Add(Req(1, Prompt(4))).ok());
  ScheduledStep step = sched.Schedule(kNow);
  ASSERT_TRUE(sched.FinalizeStep(&step).ok());
  std::vector<SampledTokenId> wrong = {{7, 1}};
  EXPECT_EQ(sched.OnStepResult(step.step_id, wrong).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sched.OnStepResult(step.step_id, {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sched.OnStepResult(step.step_id + 5, {}).code(), absl::StatusCode::kInvalidArgument);
  std::vector<SampledTokenId> negative = {{1, -1}};
  EXPECT_EQ(sched.OnStepResult(step.step_id, negative).code(), absl::StatusCode::kInvalidArgument);
  std::vector<SampledTokenId> right = {{1, 3}};
  EXPECT_TRUE(sched.OnStepResult(step.step_id, right).ok());
  // An empty step needs no result.
  ScheduledStep idle = Scheduler({}, 16, 4).Schedule(kNow);
  EXPECT_TRUE(idle.empty());
}

TEST(SchedulerTest, AddAndCancelFromOtherThreadsWhileScheduling) {
  Harness h({.max_num_batched_tokens = 32, .max_num_seqs = 8, .max_waiting = 1000}, 256, 4);
  std::atomic<bool> client_done{false};
  std::thread client([&] {
    for (uint64_t id = 1; id <= 200; ++id) {
      EXPECT_TRUE(h.sched.Add(Req(id, Prompt(1 + id % 9))).ok());
      if (id % 3 == 0) {
        EXPECT_TRUE(h.sched.Cancel(id).ok() || !h.sched.Contains(id));
      }
    }
    client_done = true;
  });
  int finished = 0;
  for (int i = 0; i < 100000 && (!client_done || h.sched.HasWork()); ++i) {
    ScheduledStep step = h.Step();
    if (step.empty()) std::this_thread::yield();
    finished += static_cast<int>(step.finished.size());
    for (const ScheduledSequence& s : step.seqs) {
      if (s.sample && h.sched.Contains(s.seq_id) && h.outputs[s.seq_id].size() >= 2) {
        ASSERT_TRUE(h.sched.Finish(s.seq_id, FinishReason::kStop).ok());
        ++finished;
      }
    }
  }
  client.join();
  EXPECT_EQ(finished, 200);
  EXPECT_FALSE(h.sched.HasWork());
  EXPECT_EQ(h.sched.metrics().kv_cache_usage_ratio, 0.0);
}

}  // namespace
}  // namespace tpserve
