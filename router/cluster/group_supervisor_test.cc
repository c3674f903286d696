// GroupSupervisor against in-process fake workers that register in a real
// rendezvous store: forming an epoch, mismatches named at once, detection of
// exited and hung ranks, fencing by epoch, re-forming when a replacement
// rank registers, and a second group (its own rendezvous keys, the router's
// shared epoch counter, the KV-block floor).
#include "router/cluster/group_supervisor.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rendezvous/grpc_kv_store.h"
#include "router/cluster/fake_worker_service.h"

namespace tpserve {
namespace {

using ::testing::HasSubstr;

class GroupSupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(rendezvous_.Start("127.0.0.1", 0).ok());
    store_ = std::make_unique<GrpcKvStoreClient>(absl::StrCat("127.0.0.1:", rendezvous_.port()),
                                                 grpc::InsecureChannelCredentials());
    for (int r = 0; r < 2; ++r) AddWorker(r);
  }
  void TearDown() override {
    if (supervisor_ != nullptr) supervisor_->Stop();
  }

  // Starts (or replaces) rank r and registers it.
  void AddWorker(int r) {
    if (static_cast<int>(workers_.size()) <= r) {
      workers_.resize(r + 1);
      servers_.resize(r + 1);
    }
    servers_[r].reset();
    workers_[r] = std::make_unique<FakeWorkerService>(r, 2);
    servers_[r] = std::make_unique<FakeWorkerServer>(workers_[r].get());
    ASSERT_TRUE(store_->Set(WorkerKey(rendezvous_.session(), 0, r), servers_[r]->address()).ok());
  }

  void StartSupervisor(absl::Duration step_timeout = absl::Seconds(15)) {
    GroupOptions o;
    o.step_timeout_base = step_timeout;
    o.step_timeout_per_token = absl::ZeroDuration();
    o.world_size = 2;
    o.heartbeat_interval = absl::Milliseconds(100);
    o.heartbeat_timeout = absl::Milliseconds(500);
    o.join_timeout = absl::Seconds(5);
    o.log = [this](const std::string& line) {
      absl::MutexLock lock(&mu_);
      log_.push_back(line);
    };
    supervisor_ = std::make_unique<GroupSupervisor>(o, &rendezvous_);
    supervisor_->SetEventSink([this](const GroupEvent& e) {
      absl::MutexLock lock(&mu_);
      events_.push_back(e);
    });
    supervisor_->Start();
  }

  bool WaitFor(GroupState state, absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time until = absl::Now() + timeout;
    while (absl::Now() < until) {
      if (supervisor_->state() == state) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  absl::StatusOr<v1::StepResponse> Step(int token) {
    v1::StepRequest req;
    v1::SequenceInput* s = req.add_seqs();
    s->set_seq_id(5);
    s->add_tokens(token);
    s->set_sample(true);
    absl::Notification done;
    absl::StatusOr<v1::StepResponse> result;
    supervisor_->StepAsync(req, [&](absl::StatusOr<v1::StepResponse> r) {
      result = std::move(r);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }

  std::vector<GroupEvent> Events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

  Rendezvous rendezvous_;
  std::unique_ptr<GrpcKvStoreClient> store_;
  std::vector<std::unique_ptr<FakeWorkerService>> workers_;
  std::vector<std::unique_ptr<FakeWorkerServer>> servers_;
  std::unique_ptr<GroupSupervisor> supervisor_;
  absl::Mutex mu_;
  std::vector<std::string> log_;
  std::vector<GroupEvent> events_;
};

TEST_F(GroupSupervisorTest, FormsAnEpochAndStepsCarryIt) {
  StartSupervisor();
  absl::StatusOr<ClusterInfo> info = supervisor_->WaitUntilServing(absl::Seconds(10));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->world_size, 2);
  EXPECT_EQ(info->kv_num_blocks, 100);
  const uint64_t epoch = supervisor_->ServingEpoch();
  EXPECT_GT(epoch, 0u);
  EXPECT_EQ(workers_[0]->epoch.load(), epoch);
  EXPECT_EQ(workers_[1]->epoch.load(), epoch);
  absl::StatusOr<v1::StepResponse> r = Step(41);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->tokens_size(), 1);
  EXPECT_EQ(r->tokens(0).token(), 42);
  EXPECT_EQ(workers_[1]->last_step_epoch.load(), epoch);
  EXPECT_EQ(supervisor_->DownReason(), "");
}

TEST_F(GroupSupervisorTest, AMismatchedRankIsNamedBeforeAnyTimeout) {
  workers_[1]->fingerprint = "fp1-scrambled";
  StartSupervisor();
  const absl::Time until = absl::Now() + absl::Seconds(5);
  while (supervisor_->DownReason().find("MISMATCH") == std::string::npos && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const std::string reason = supervisor_->DownReason();
  EXPECT_THAT(reason, HasSubstr("MISMATCH"));
  EXPECT_THAT(reason, HasSubstr("rank 1"));
  EXPECT_THAT(reason, HasSubstr("fp1-scrambled"));
  EXPECT_EQ(supervisor_->state(), GroupState::kStarting);
  EXPECT_EQ(workers_[0]->joins.load(), 0);  // never joined a mismatched group
}

TEST_F(GroupSupervisorTest, AnExitedRankIsDetectedNamedAndTheGroupReforms) {
  StartSupervisor();
  ASSERT_TRUE(supervisor_->WaitUntilServing(absl::Seconds(10)).ok());
  const uint64_t first = supervisor_->ServingEpoch();
  const absl::Time killed = absl::Now();
  servers_[1]->Shutdown();
  ASSERT_TRUE(WaitFor(GroupState::kRecovering));
  EXPECT_LT(absl::Now() - killed, absl::Seconds(5));
  EXPECT_EQ(supervisor_->ServingEpoch(), 0u);
  const std::string reason = supervisor_->DownReason();
  EXPECT_THAT(reason, HasSubstr("rank 1"));
  EXPECT_THAT(reason, HasSubstr("exited"));
  // Steps are refused while recovering, with the reason.
  absl::StatusOr<v1::StepResponse> r = Step(1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  // Rank 0 was told to abort the ended epoch (an asynchronous RPC).
  const absl::Time abort_until = absl::Now() + absl::Seconds(5);
  while (workers_[0]->aborts.load() < 1 && absl::Now() < abort_until) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GE(workers_[0]->aborts.load(), 1);

  AddWorker(1);  // a replacement registers (new port)
  ASSERT_TRUE(WaitFor(GroupState::kServing));
  const uint64_t second = supervisor_->ServingEpoch();
  EXPECT_GT(second, first);
  ASSERT_TRUE(Step(9).ok());
  EXPECT_EQ(workers_[0]->last_step_epoch.load(), second);
  bool counted = false;
  bool recovered = false;
  for (const GroupEvent& e : Events()) {
    counted |= e.state == GroupState::kRecovering && e.cause == "exited";
    recovered |= e.state == GroupState::kServing && e.recovery_seconds >= 0;
  }
  EXPECT_TRUE(counted);
  EXPECT_TRUE(recovered);
}

TEST_F(GroupSupervisorTest, AHungRankIsDetectedByItsHeartbeat) {
  StartSupervisor();
  ASSERT_TRUE(supervisor_->WaitUntilServing(absl::Seconds(10)).ok());
  workers_[0]->health_delay = absl::Seconds(2);
  ASSERT_TRUE(WaitFor(GroupState::kRecovering));
  EXPECT_THAT(supervisor_->DownReason(), HasSubstr("rank 0"));
  EXPECT_THAT(supervisor_->DownReason(), HasSubstr("hung"));
  workers_[0]->health_delay = absl::ZeroDuration();  // it wakes up: re-forms
  ASSERT_TRUE(WaitFor(GroupState::kServing));
}

TEST_F(GroupSupervisorTest, AFailedStepNamesTheDeadRankNotTheReporter) {
  StartSupervisor();
  ASSERT_TRUE(supervisor_->WaitUntilServing(absl::Seconds(10)).ok());
  // Rank 0 reports the collective error; rank 1 is the one that is gone.
  workers_[0]->fail_steps = true;
  servers_[1]->Shutdown();
  absl::StatusOr<v1::StepResponse> r = Step(1);
  EXPECT_FALSE(r.ok());
  ASSERT_TRUE(WaitFor(GroupState::kRecovering));
  const absl::Time until = absl::Now() + absl::Seconds(5);
  while (supervisor_->DownReason().find("exited") == std::string::npos && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_THAT(supervisor_->DownReason(), HasSubstr("rank 1"));
  EXPECT_THAT(supervisor_->DownReason(), HasSubstr("exited"));
}

TEST_F(GroupSupervisorTest, AGroupSlowerThanTheStepDeadlineGetsALongerOne) {
  // Every step takes 700 ms; the deadline starts at 250 ms: it doubles on
  // each step (or warm-up) that times out (250 -> 500 -> 1000 ms), then steps
  // succeed instead of the group failing the same step forever.
  StartSupervisor(absl::Milliseconds(250));
  ASSERT_TRUE(supervisor_->WaitUntilServing(absl::Seconds(10)).ok());
  workers_[0]->step_delay = absl::Milliseconds(700);
  workers_[1]->step_delay = absl::Milliseconds(700);
  bool ok = false;
  for (int attempt = 0; attempt < 5 && !ok; ++attempt) {
    ASSERT_TRUE(WaitFor(GroupState::kServing, absl::Seconds(20)));
    ok = Step(3).ok();
  }
  EXPECT_TRUE(ok);
  EXPECT_EQ(supervisor_->StepTimeout(0), absl::Milliseconds(1000));
}

TEST_F(GroupSupervisorTest, StepDeadlineGrowsWithTheStep) {
  GroupOptions o;
  o.step_timeout_base = absl::Seconds(10);
  o.step_timeout_per_token = absl::Milliseconds(20);
  GroupSupervisor s(o, &rendezvous_);
  EXPECT_EQ(s.StepTimeout(1), absl::Milliseconds(10020));
  EXPECT_EQ(s.StepTimeout(512), absl::Milliseconds(20240));
}

TEST_F(GroupSupervisorTest, ASecondGroupUsesItsOwnKeysAndTheSharedEpochCounter) {
  // The same two fake ranks, registered as group 1 only.
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(store_->Set(WorkerKey(rendezvous_.session(), 1, r), servers_[r]->address()).ok());
  }
  auto epochs = std::make_shared<std::atomic<uint64_t>>(41);  // other groups used 1..41
  GroupOptions o;
  o.group = 1;
  o.epochs = epochs;
  o.world_size = 2;
  o.join_timeout = absl::Seconds(5);
  std::vector<GroupEvent> events;
  absl::Mutex events_mu;
  GroupSupervisor group1(o, &rendezvous_);
  group1.SetEventSink([&](const GroupEvent& e) {
    absl::MutexLock lock(&events_mu);
    events.push_back(e);
  });
  group1.SetMinKvBlocks(101);  // the fakes offer 100: refused, naming why
  group1.Start();
  absl::StatusOr<ClusterInfo> info = group1.WaitUntilServing(absl::Seconds(1));
  EXPECT_FALSE(info.ok());
  EXPECT_THAT(group1.DownReason(), HasSubstr("MISMATCH"));
  EXPECT_THAT(group1.DownReason(), HasSubstr("100 KV blocks"));
  group1.SetMinKvBlocks(100);
  info = group1.WaitUntilServing(absl::Seconds(10));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(group1.ServingEpoch(), 42u);
  EXPECT_EQ(workers_[0]->epoch.load(), 42u);
  EXPECT_EQ(epochs->load(), 42u);
  group1.Stop();
  absl::MutexLock lock(&events_mu);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().group, 1);
  EXPECT_EQ(events.back().state, GroupState::kServing);
}

}  // namespace
}  // namespace tpserve
