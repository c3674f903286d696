// ServingLoop against a fake executor: the real scheduler, tokenizer (the
// default model's, from $TPSERVE_ROOT/models) and stop-string logic, with
// workers replaced by a function that emits "a", "b", "c", "a", ... after the
// prompt. Covers max_tokens, stop strings (no partial leak), stop/eos tokens,
// cancellation, deadlines, the queue bound, worker failure, and several
// groups (spread, a failed group's requests moving, drain, a late group).
#include "router/api/serving_loop.h"

#include <cstdlib>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "router/tokenizer/tokenizer_gguf.h"

namespace tpserve {
namespace {

class CollectingSink : public ResponseSink {
 public:
  void Send(v1::GenerateResponse r) override {
    absl::MutexLock lock(&mu_);
    text_ += r.text();
    tokens_ += r.token_ids_size();
    last_ = std::move(r);
  }
  void Close(absl::Status s) override {
    {
      absl::MutexLock lock(&mu_);
      status_ = std::move(s);
    }
    closed_.Notify();
  }
  bool Wait(absl::Duration d = absl::Seconds(20)) {
    return closed_.WaitForNotificationWithTimeout(d);
  }
  std::string text() {
    absl::MutexLock l(&mu_);
    return text_;
  }
  int tokens() {
    absl::MutexLock l(&mu_);
    return tokens_;
  }
  absl::Status status() {
    absl::MutexLock l(&mu_);
    return status_;
  }
  v1::GenerateResponse last() {
    absl::MutexLock l(&mu_);
    return last_;
  }

 private:
  absl::Mutex mu_;
  std::string text_ ABSL_GUARDED_BY(mu_);
  int tokens_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  v1::GenerateResponse last_ ABSL_GUARDED_BY(mu_);
  absl::Notification closed_;
};

// Emits cycle[(pos - prompt_len) % 3] for each sampled sequence, where pos is
// the sampled token's position; once `fail` is set, the next step fails and
// ends the epoch (ServingEpoch() 0, as GroupSupervisor does) until Heal();
// can stall steps by `delay`.
class FakeExecutor : public StepExecutor {
 public:
  explicit FakeExecutor(std::vector<int32_t> cycle) : cycle_(std::move(cycle)) {}
  void StepAsync(v1::StepRequest request, StepCallback done) override {
    if (delay_ > absl::ZeroDuration()) absl::SleepFor(delay_);
    steps_.fetch_add(1);
    {
      absl::MutexLock lock(&log_mu_);
      log_.push_back(request);
    }
    if (fail_ || epoch_ == 0) {
      epoch_ = 0;
      done(absl::UnavailableError("worker rank 1 (fake) step failed"));
      return;
    }
    v1::StepResponse response;
    for (const v1::SequenceInput& s : request.seqs()) {
      // Like a worker: a lean (delta) entry's prompt_len is the one its
      // sequence's full entry carried.
      if (!s.delta()) prompt_lens_[s.seq_id()] = s.prompt_len();
      const int prompt_len = prompt_lens_[s.seq_id()];
      if (!s.sample()) continue;
      const int pos = s.start_pos() + s.tokens_size();
      v1::SampledToken* t = response.add_tokens();
      t->set_seq_id(s.seq_id());
      t->set_token(cycle_[(pos - prompt_len) % cycle_.size()]);
    }
    done(std::move(response));
  }
  absl::Status Free(const std::vector<uint64_t>&) override { return absl::OkStatus(); }
  uint64_t ServingEpoch() const override { return epoch_; }
  std::string DownReason() const override { return epoch_ == 0 ? "rank 1 (fake) exited" : ""; }
  void Heal() {
    fail_ = false;
    epoch_ = next_epoch_++;
  }

  std::atomic<uint64_t> epoch_{1};
  uint64_t next_epoch_ = 2;
  std::atomic<bool> fail_{false};
  absl::Duration delay_ = absl::ZeroDuration();
  std::atomic<int> steps_{0};
  absl::Mutex log_mu_;
  std::vector<v1::StepRequest> log_ ABSL_GUARDED_BY(log_mu_);  // every step sent

 private:
  std::vector<int32_t> cycle_;
  absl::flat_hash_map<uint64_t, int> prompt_lens_;  // loop thread only
};

class ServingLoopTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* root = std::getenv("TPSERVE_ROOT");
    ASSERT_NE(root, nullptr) << "set TPSERVE_ROOT";
    absl::StatusOr<TokenizerData> data =
        TokenizerDataFromGguf(std::string(root) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    ASSERT_TRUE(data.ok()) << data.status();
    absl::StatusOr<Tokenizer> tok = Tokenizer::Create(*std::move(data));
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = new Tokenizer(*std::move(tok));
  }

  void Start(int max_waiting = 64, std::vector<int32_t> eos = {}, int max_num_seqs = 8,
             absl::Duration recovery_timeout = absl::Minutes(5)) {
    a_ = tokenizer_->TokenId("a");
    b_ = tokenizer_->TokenId("b");
    c_ = tokenizer_->TokenId("c");
    ASSERT_GE(a_, 0);
    executor_ = std::make_unique<FakeExecutor>(std::vector<int32_t>{a_, b_, c_});
    metrics_ = std::make_unique<RouterMetrics>(registry_, "test");
    ServingLoop::Options o;
    o.scheduler.max_num_batched_tokens = 64;
    o.scheduler.max_num_seqs = max_num_seqs;
    o.scheduler.max_waiting = max_waiting;
    o.num_blocks = 64;
    o.block_size = 16;
    o.eos_ids = std::move(eos);
    o.recovery_timeout = recovery_timeout;
    loop_ = std::make_unique<ServingLoop>(o, executor_.get(), tokenizer_, metrics_.get());
    loop_->Start();
  }

  // `n` groups, each a FakeExecutor (executors_[g]); group 0 is executor_.
  void StartGroups(int n, int max_num_seqs = 8) {
    a_ = tokenizer_->TokenId("a");
    b_ = tokenizer_->TokenId("b");
    c_ = tokenizer_->TokenId("c");
    std::vector<StepExecutor*> raw;
    for (int g = 0; g < n; ++g) {
      executors_.push_back(std::make_unique<FakeExecutor>(std::vector<int32_t>{a_, b_, c_}));
      raw.push_back(executors_.back().get());
    }
    metrics_ = std::make_unique<RouterMetrics>(registry_, "test");
    ServingLoop::Options o;
    o.scheduler.max_num_batched_tokens = 64;
    o.scheduler.max_num_seqs = max_num_seqs;
    o.scheduler.max_waiting = 64;
    o.num_blocks = 64;
    o.block_size = 16;
    loop_ = std::make_unique<ServingLoop>(o, raw, tokenizer_, metrics_.get());
    loop_->Start();
  }

  // Waits until `pred(snapshot)` holds (the loop refreshes it every turn).
  bool AwaitSnapshot(std::function<bool(const std::vector<ServingLoop::GroupSnapshot>&)> pred) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      if (pred(loop_->Snapshot())) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  GenerateJob Job(std::shared_ptr<CollectingSink> sink, int max_tokens) {
    GenerateJob job;
    job.request_id = "t";
    job.prompt = *tokenizer_->Encode("Hello there, how are you?", false);
    job.max_tokens = max_tokens;
    job.sink = std::move(sink);
    return job;
  }

  static Tokenizer* tokenizer_;
  int32_t a_ = -1, b_ = -1, c_ = -1;
  prometheus::Registry registry_;
  std::unique_ptr<FakeExecutor> executor_;
  std::vector<std::unique_ptr<FakeExecutor>> executors_;
  std::unique_ptr<RouterMetrics> metrics_;
  std::unique_ptr<ServingLoop> loop_;
};

Tokenizer* ServingLoopTest::tokenizer_ = nullptr;

TEST_F(ServingLoopTest, MaxTokensEndsWithLength) {
  Start();
  auto sink = std::make_shared<CollectingSink>();
  loop_->Submit(Job(sink, 7));
  ASSERT_TRUE(sink->Wait());
  EXPECT_TRUE(sink->status().ok()) << sink->status();
  EXPECT_EQ(sink->text(), "abcabca");
  EXPECT_EQ(sink->tokens(), 7);
  EXPECT_EQ(sink->last().finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(sink->last().usage().completion_tokens(), 7);
  EXPECT_EQ(sink->last().usage().prompt_tokens(),
            static_cast<int>(tokenizer_->Encode("Hello there, how are you?", false)->size()));
  EXPECT_EQ(loop_->num_live(), 0);
}

TEST_F(ServingLoopTest, StopStringIsCutAndNeverLeaks) {
  Start();
  auto sink = std::make_shared<CollectingSink>();
  GenerateJob job = Job(sink, 50);
  job.stop = {"cab"};
  loop_->Submit(std::move(job));
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->text(), "ab");
  EXPECT_EQ(sink->tokens(), 5);  // a b c a b: the stop string's tokens are reported
  EXPECT_EQ(sink->last().finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(sink->last().stop_reason(), "cab");
}

TEST_F(ServingLoopTest, EosAndStopTokensEndGeneration) {
  Start(64, /*eos=*/{-7});
  auto sink = std::make_shared<CollectingSink>();
  GenerateJob job = Job(sink, 50);
  job.stop_token_ids = {c_};
  loop_->Submit(std::move(job));
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->text(), "ab");  // the stop token is not returned as text
  EXPECT_EQ(sink->tokens(), 3);
  EXPECT_EQ(sink->last().stop_reason(), "c");
}

TEST_F(ServingLoopTest, CancelClosesWithCancelled) {
  Start();
  executor_->delay_ = absl::Milliseconds(5);
  auto sink = std::make_shared<CollectingSink>();
  uint64_t id = loop_->Submit(Job(sink, 5000));
  while (sink->tokens() < 3) absl::SleepFor(absl::Milliseconds(1));
  loop_->Cancel(id);
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(loop_->num_live(), 0);
}

TEST_F(ServingLoopTest, DeadlineClosesWithDeadlineExceeded) {
  Start();
  executor_->delay_ = absl::Milliseconds(5);
  auto sink = std::make_shared<CollectingSink>();
  GenerateJob job = Job(sink, 5000);
  job.deadline = absl::Now() + absl::Milliseconds(100);
  loop_->Submit(std::move(job));
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_GT(sink->tokens(), 0);
}

TEST_F(ServingLoopTest, FullQueueIsResourceExhausted) {
  Start(/*max_waiting=*/1);
  executor_->delay_ = absl::Milliseconds(20);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  std::vector<uint64_t> ids;
  for (int i = 0; i < 20; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ids.push_back(loop_->Submit(Job(sinks.back(), 1000)));
  }
  int exhausted = 0;
  for (auto& s : sinks) {
    if (s->Wait(absl::Milliseconds(500)) &&
        s->status().code() == absl::StatusCode::kResourceExhausted) {
      ++exhausted;
    }
  }
  EXPECT_GT(exhausted, 0);
  for (uint64_t id : ids) loop_->Cancel(id);
  for (auto& s : sinks) ASSERT_TRUE(s->Wait());
}

TEST_F(ServingLoopTest, AFailedGroupCostsLatencyNotTokens) {
  Start();
  executor_->delay_ = absl::Milliseconds(2);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 4; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    loop_->Submit(Job(sinks.back(), 30));
  }
  while (sinks[0]->tokens() < 5) absl::SleepFor(absl::Milliseconds(1));
  executor_->fail_ = true;
  while (executor_->ServingEpoch() != 0) absl::SleepFor(absl::Milliseconds(1));
  absl::SleepFor(absl::Milliseconds(200));  // recovering: nothing arrives, nothing fails
  for (auto& s : sinks) EXPECT_FALSE(s->Wait(absl::ZeroDuration()));
  executor_->Heal();
  for (auto& s : sinks) {
    ASSERT_TRUE(s->Wait());
    EXPECT_TRUE(s->status().ok()) << s->status();
    // Exactly the unfaulted output: no token twice, none missing.
    EXPECT_EQ(s->text(), "abcabcabcabcabcabcabcabcabcabc");
    EXPECT_EQ(s->tokens(), 30);
    EXPECT_EQ(s->last().usage().completion_tokens(), 30);
  }
  EXPECT_GE(metrics_->requests_resumed->Value(), 4);
}

TEST_F(ServingLoopTest, RequestsWaitForRecoveryThenFailNamingTheCause) {
  Start(64, {}, 8, /*recovery_timeout=*/absl::Milliseconds(300));
  executor_->fail_ = true;
  auto sink = std::make_shared<CollectingSink>();
  const absl::Time start = absl::Now();
  loop_->Submit(Job(sink, 10));
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(sink->status().message().find("rank 1 (fake) exited"), absl::string_view::npos)
      << sink->status();
  EXPECT_NE(sink->status().message().find("--recovery_timeout"), absl::string_view::npos);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  executor_->Heal();
  auto again = std::make_shared<CollectingSink>();
  loop_->Submit(Job(again, 3));
  ASSERT_TRUE(again->Wait());
  EXPECT_TRUE(again->status().ok());
  EXPECT_EQ(again->text(), "abc");
}

TEST_F(ServingLoopTest, DeadlinesAndCancelsAreHonouredWhileRecovering) {
  Start();
  executor_->fail_ = true;
  auto late = std::make_shared<CollectingSink>();
  GenerateJob job = Job(late, 50);
  job.deadline = absl::Now() + absl::Milliseconds(200);
  const absl::Time start = absl::Now();
  loop_->Submit(std::move(job));
  auto cancelled = std::make_shared<CollectingSink>();
  const uint64_t id = loop_->Submit(Job(cancelled, 50));
  ASSERT_TRUE(late->Wait());
  EXPECT_EQ(late->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(700));
  loop_->Cancel(id);
  ASSERT_TRUE(cancelled->Wait(absl::Seconds(2)));
  EXPECT_EQ(cancelled->status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(loop_->num_live(), 0);
}

TEST_F(ServingLoopTest, StopEndsOpenStreamsWithUnavailable) {
  Start();
  executor_->delay_ = absl::Milliseconds(5);
  auto sink = std::make_shared<CollectingSink>();
  loop_->Submit(Job(sink, 100000));
  while (sink->tokens() < 1) absl::SleepFor(absl::Milliseconds(1));
  loop_->Stop();
  ASSERT_TRUE(sink->Wait(absl::Seconds(1)));
  EXPECT_EQ(sink->status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ServingLoopTest, HigherPriorityIsAdmittedFirst) {
  Start(64, {}, /*max_num_seqs=*/1);
  executor_->delay_ = absl::Milliseconds(2);
  auto first = std::make_shared<CollectingSink>();
  loop_->Submit(Job(first, 20));
  while (first->tokens() < 1) absl::SleepFor(absl::Milliseconds(1));
  // Both queue behind `first`; the later, higher-priority one runs before.
  auto low = std::make_shared<CollectingSink>();
  auto high = std::make_shared<CollectingSink>();
  GenerateJob low_job = Job(low, 5);
  low_job.priority = 0;
  GenerateJob high_job = Job(high, 5);
  high_job.priority = 10;
  loop_->Submit(std::move(low_job));
  absl::SleepFor(absl::Milliseconds(5));
  loop_->Submit(std::move(high_job));
  ASSERT_TRUE(high->Wait());
  EXPECT_FALSE(low->Wait(absl::ZeroDuration())) << "low priority finished before high";
  ASSERT_TRUE(low->Wait());
  EXPECT_TRUE(low->status().ok());
}

TEST_F(ServingLoopTest, TwoGroupsShareRequestsAndAFailedGroupsRequestsMove) {
  StartGroups(2);
  executors_[1]->delay_ = absl::Milliseconds(2);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 4; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    loop_->Submit(Job(sinks.back(), 30));
  }
  while (executors_[1]->steps_.load() < 5) absl::SleepFor(absl::Milliseconds(1));
  executors_[1]->fail_ = true;  // group 1 fails for good: its requests move to group 0
  for (auto& sink : sinks) {
    ASSERT_TRUE(sink->Wait());
    EXPECT_TRUE(sink->status().ok()) << sink->status();
    EXPECT_EQ(sink->tokens(), 30);  // every token once: resumed by recompute
    EXPECT_EQ(sink->text(), "abcabcabcabcabcabcabcabcabcabc");
  }
  EXPECT_GT(executors_[0]->steps_.load(), 0);
  // Group 1 got some at first (p of 4); they moved: group 0 placed its own
  // 4 - p and the p moved ones.
  ASSERT_TRUE(AwaitSnapshot([](const auto& s) {
    return s[1].epoch == 0 && s[1].placed_total >= 1 && s[0].placed_total == 4 && s[0].live == 0;
  }));
}

TEST_F(ServingLoopTest, DrainedGroupTakesNoNewRequestsUntilUndrained) {
  StartGroups(2);
  loop_->SetDrained(1, true);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 4; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    loop_->Submit(Job(sinks.back(), 5));
  }
  for (auto& sink : sinks) ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(executors_[1]->steps_.load(), 0);
  ASSERT_TRUE(AwaitSnapshot([](const auto& s) {
    return s[1].drained && s[1].live == 0 && s[0].placed_total == 4 && s[1].placed_total == 0;
  }));
  loop_->SetDrained(1, false);
  sinks.clear();
  for (int i = 0; i < 4; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    loop_->Submit(Job(sinks.back(), 5));
  }
  for (auto& sink : sinks) ASSERT_TRUE(sink->Wait());
  EXPECT_GT(executors_[1]->steps_.load(), 0);
}

TEST_F(ServingLoopTest, AGroupThatStartsServingLaterGetsRequests) {
  StartGroups(2);
  executors_[1]->epoch_ = 0;  // not formed yet
  auto first = std::make_shared<CollectingSink>();
  loop_->Submit(Job(first, 5));
  ASSERT_TRUE(first->Wait());
  EXPECT_TRUE(first->status().ok());
  executors_[1]->Heal();  // the late group's first epoch
  ASSERT_TRUE(AwaitSnapshot([](const auto& s) { return s[1].epoch != 0; }));
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 4; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    loop_->Submit(Job(sinks.back(), 5));
  }
  for (auto& sink : sinks) {
    ASSERT_TRUE(sink->Wait());
    EXPECT_TRUE(sink->status().ok());
  }
  EXPECT_GT(executors_[1]->steps_.load(), 0);
}

TEST_F(ServingLoopTest, LeanStepsSendParametersOnceThenOnlyNewBlocks) {
  Start();
  auto sink = std::make_shared<CollectingSink>();
  GenerateJob job = Job(sink, 40);  // the prompt (< 16 tokens) + 40 tokens: 3-4 blocks
  job.sampling.temperature = 0.7f;
  job.sampling.seed = 5;
  loop_->Submit(std::move(job));
  ASSERT_TRUE(sink->Wait());
  absl::MutexLock lock(&executor_->log_mu_);
  ASSERT_GT(executor_->log_.size(), 30u);
  std::vector<int32_t> table;  // the block table the workers rebuild
  int full = 0;
  for (const v1::StepRequest& r : executor_->log_) {
    for (const v1::SequenceInput& s : r.seqs()) {
      if (!s.delta()) {
        ++full;
        EXPECT_FLOAT_EQ(s.sampling().temperature(), 0.7f);
        table.assign(s.block_table().begin(), s.block_table().end());
        continue;
      }
      EXPECT_FALSE(s.has_sampling());  // parameters went once
      EXPECT_LE(s.block_table_size(), 1);
      table.insert(table.end(), s.block_table().begin(), s.block_table().end());
      // Every block the step writes is in the rebuilt table.
      EXPECT_GE(static_cast<int>(table.size()) * 16, s.start_pos() + s.tokens_size());
    }
  }
  EXPECT_EQ(full, 1);
  EXPECT_GE(table.size(), 3u);
}

}  // namespace
}  // namespace tpserve
