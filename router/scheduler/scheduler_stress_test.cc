// Seeded randomized workloads (bounded): random arrivals, priorities, prompt
// sharing, cancels, deadlines, tiny KV caches that force preemption, serial
// and pipelined drivers. Checks after every step: scheduler and block-manager
// invariants, budget and batch limits, no sequence twice in a step; at the
// end: every request finished exactly once, the KV cache is empty, and every
// output token equals the fake model's reference (so block tables, positions,
// prefix reuse and recompute were all right).
#include <cstdint>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "router/kv/block_manager.h"
#include "router/scheduler/fake_worker.h"
#include "router/scheduler/scheduler.h"

namespace tpserve {
namespace {

using ::tpserve::scheduler_testing::FakeWorker;
using ::tpserve::scheduler_testing::ReferenceNextToken;

struct Client {
  SchedulerRequest request;
  int32_t max_tokens = 1;
  std::vector<int32_t> output;
  int finishes = 0;
  FinishReason reason = FinishReason::kStop;
  bool added = false;
};

// Totals over all seeds, so the suite proves it reached the interesting paths.
struct Coverage {
  int64_t preemptions = 0, prefix_hits = 0, cancelled = 0, expired = 0, length_capped = 0;
  int64_t steps = 0, full_budget_steps = 0;
};
Coverage& Totals() {
  static Coverage totals;
  return totals;
}

class CoverageCheck : public ::testing::Environment {
 public:
  void TearDown() override {
    const Coverage& c = Totals();
    std::printf(
        "stress coverage: steps %ld (full budget %ld), preemptions %ld, prefix hit "
        "tokens %ld, cancelled %ld, expired %ld, length-capped %ld\n",
        static_cast<long>(c.steps), static_cast<long>(c.full_budget_steps),
        static_cast<long>(c.preemptions), static_cast<long>(c.prefix_hits),
        static_cast<long>(c.cancelled), static_cast<long>(c.expired),
        static_cast<long>(c.length_capped));
    EXPECT_GT(c.preemptions, 0);
    EXPECT_GT(c.prefix_hits, 0);
    EXPECT_GT(c.cancelled, 0);
    EXPECT_GT(c.expired, 0);
    EXPECT_GT(c.full_budget_steps, 0);
  }
};
const ::testing::Environment* const kCoverage =
    ::testing::AddGlobalTestEnvironment(new CoverageCheck);

struct Params {
  uint32_t seed;
  bool pipelined;
};

class SchedulerStressTest : public ::testing::TestWithParam<Params> {};

TEST_P(SchedulerStressTest, RandomWorkloadFinishesCorrectly) {
  const Params p = GetParam();
  std::mt19937 rng(p.seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };

  const int32_t block_size = std::vector<int32_t>{1, 2, 4, 16}[uniform(0, 3)];
  const int32_t num_blocks = uniform(48, 96) / block_size + uniform(2, 6);
  const int32_t capacity = num_blocks * block_size;
  SchedulerConfig config;
  config.max_num_batched_tokens = uniform(1, 48);
  config.max_num_seqs = uniform(1, 8);
  config.max_waiting = uniform(1, 12);
  config.max_model_len = uniform(capacity / 2, capacity);
  config.admission_watermark_blocks = uniform(0, 1);
  config.enable_prefix_cache = uniform(0, 3) != 0;
  SCOPED_TRACE(::testing::Message()
               << "seed " << p.seed << " pipelined " << p.pipelined << " blocks " << num_blocks
               << "x" << block_size << " budget " << config.max_num_batched_tokens << " seqs "
               << config.max_num_seqs << " max_len " << config.max_model_len);
  Scheduler sched(config, num_blocks, block_size);
  FakeWorker worker(num_blocks, block_size);

  // A few shared stems so prompts often share full blocks.
  std::vector<std::vector<int32_t>> stems(3);
  for (auto& stem : stems) {
    stem.resize(uniform(0, 24));
    for (int32_t& t : stem) t = uniform(0, 50);
  }
  const int kRequests = 40;
  std::vector<Client> clients(kRequests);
  absl::Time now = absl::FromUnixSeconds(1);
  for (int i = 0; i < kRequests; ++i) {
    Client& c = clients[i];
    c.request.seq_id = 1000 + i;
    c.request.priority = uniform(0, 2);
    c.request.prompt = stems[uniform(0, 2)];
    const int extra = uniform(1, 12);
    for (int k = 0; k < extra; ++k) c.request.prompt.push_back(uniform(0, 50));
    if (static_cast<int32_t>(c.request.prompt.size()) >= config.max_model_len) {
      c.request.prompt.resize(config.max_model_len - 1);
    }
    if (uniform(0, 9) == 0) c.request.deadline = now + absl::Milliseconds(uniform(1, 40));
    c.max_tokens = uniform(1, 10);
  }
  std::map<uint64_t, int> index;
  for (int i = 0; i < kRequests; ++i) index[clients[i].request.seq_id] = i;

  auto record_finish = [&](uint64_t id, FinishReason reason) {
    Client& c = clients[index.at(id)];
    ++c.finishes;
    c.reason = reason;
  };
  auto resolve = [&](const ScheduledStep& step, const std::vector<SampledTokenId>& out) {
    ASSERT_TRUE(sched.OnStepResult(step.step_id, out).ok());
    for (const SampledTokenId& t : out) {
      if (!sched.Contains(t.seq_id)) continue;  // cancelled or expired meanwhile
      Client& c = clients[index.at(t.seq_id)];
      c.output.push_back(t.token);
      const bool stop = t.token % 53 == 0;
      if (stop || static_cast<int32_t>(c.output.size()) >= c.max_tokens) {
        const FinishReason reason = stop ? FinishReason::kStop : FinishReason::kLength;
        ASSERT_TRUE(sched.Finish(t.seq_id, reason).ok());
        record_finish(t.seq_id, reason);
      }
    }
  };

  int next_client = 0;
  ScheduledStep cur;
  std::vector<SampledTokenId> cur_out;
  int iterations = 0;
  for (; iterations < 4000; ++iterations) {
    // Arrivals (the queue may push back) and the occasional cancel.
    for (int k = uniform(0, 3); k > 0 && next_client < kRequests; --k) {
      absl::Status s = sched.Add(clients[next_client].request);
      if (s.code() == absl::StatusCode::kResourceExhausted) break;
      ASSERT_TRUE(s.ok()) << s;
      clients[next_client++].added = true;
    }
    if (uniform(0, 29) == 0 && next_client > 0) {
      const uint64_t id = clients[uniform(0, next_client - 1)].request.seq_id;
      if (sched.Contains(id)) {
        ASSERT_TRUE(sched.Cancel(id).ok());
      }
    }
    if (next_client == kRequests && !sched.HasWork() && cur.empty()) break;

    now += absl::Milliseconds(1);
    ScheduledStep next = sched.Schedule(now);
    for (const FinishedSequence& f : next.finished) record_finish(f.seq_id, f.reason);
    if (p.pipelined && !cur.empty()) resolve(cur, cur_out);
    const size_t finished_before = next.finished.size();
    ASSERT_TRUE(sched.FinalizeStep(&next).ok());
    ASSERT_EQ(next.finished.size(), finished_before);  // Finish() reports itself

    if (cur.empty() && next.empty()) {
      ASSERT_FALSE(sched.HasWork()) << "nothing in flight, live sequences, empty step";
    }
    ASSERT_LE(next.num_tokens, config.max_num_batched_tokens);
    ASSERT_LE(static_cast<int32_t>(next.seqs.size()), config.max_num_seqs);
    ASSERT_EQ(next.num_pending_tokens, 0);
    absl::flat_hash_set<uint64_t> in_step;
    int32_t tokens = 0;
    for (const ScheduledSequence& s : next.seqs) {
      ASSERT_TRUE(in_step.insert(s.seq_id).second) << "sequence twice in a step";
      tokens += static_cast<int32_t>(s.tokens.size());
      ASSERT_LE(s.start_pos + static_cast<int32_t>(s.tokens.size()), config.max_model_len);
    }
    ASSERT_EQ(tokens, next.num_tokens);
    ++Totals().steps;
    Totals().full_budget_steps += next.num_tokens == config.max_num_batched_tokens;

    absl::StatusOr<std::vector<SampledTokenId>> out = worker.Run(next);
    ASSERT_TRUE(out.ok()) << out.status();
    cur = std::move(next);
    cur_out = std::move(*out);
    if (!p.pipelined) {
      resolve(cur, cur_out);
      cur = ScheduledStep();
      cur_out.clear();
    }
    absl::Status inv = sched.CheckInvariants();
    ASSERT_TRUE(inv.ok()) << "step " << iterations << ": " << inv;
    const SchedulerMetrics m = sched.metrics();
    ASSERT_GE(m.kv_cache_usage_ratio, 0.0);
    ASSERT_LE(m.kv_cache_usage_ratio, 1.0);
    ASSERT_LE(m.prefix_cache_hits_total, m.prefix_cache_queries_total);
  }
  ASSERT_LT(iterations, 4000) << "workload did not drain";
  Totals().preemptions += sched.metrics().num_preemptions_total;
  Totals().prefix_hits += sched.metrics().prefix_cache_hits_total;
  EXPECT_EQ(sched.metrics().kv_cache_usage_ratio, 0.0);
  EXPECT_EQ(sched.metrics().num_running, 0);
  EXPECT_EQ(sched.metrics().num_waiting, 0);
  ASSERT_TRUE(sched.block_manager().CheckInvariants().ok());
  for (const Client& c : clients) {
    Totals().cancelled += c.reason == FinishReason::kCancelled;
    Totals().expired += c.reason == FinishReason::kDeadline;
    Totals().length_capped +=
        c.reason == FinishReason::kLength && static_cast<int32_t>(c.output.size()) < c.max_tokens;
    ASSERT_TRUE(c.added);
    EXPECT_EQ(c.finishes, 1) << "request " << c.request.seq_id;
    std::vector<int32_t> context = c.request.prompt;
    for (int32_t token : c.output) {
      ASSERT_EQ(token, ReferenceNextToken(context)) << "request " << c.request.seq_id;
      context.push_back(token);
    }
    if (c.reason == FinishReason::kLength && static_cast<int32_t>(c.output.size()) < c.max_tokens) {
      // The scheduler's length cap: the sequence filled max_model_len.
      EXPECT_EQ(static_cast<int32_t>(context.size()), config.max_model_len);
    }
  }
}

std::vector<Params> AllParams() {
  std::vector<Params> params;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    params.push_back({seed, false});
    params.push_back({seed, true});
  }
  return params;
}

INSTANTIATE_TEST_SUITE_P(Seeds, SchedulerStressTest, ::testing::ValuesIn(AllParams()),
                         [](const ::testing::TestParamInfo<Params>& info) {
                           return "seed" + std::to_string(info.param.seed) +
                                  (info.param.pipelined ? "_pipelined" : "_serial");
                         });

}  // namespace
}  // namespace tpserve
