// WorkerGroup against in-process fake Worker services on port 0: concurrent
// fan-out with rank 0's tokens, per-rank Info/Health/Join, and errors that
// name the failing rank.
#include "router/cluster/worker_group.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router/cluster/fake_worker_service.h"

namespace tpserve {
namespace {

using ::testing::HasSubstr;

class WorkerGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int r = 0; r < 2; ++r) {
      workers_.push_back(std::make_unique<FakeWorkerService>(r, 2));
      servers_.push_back(std::make_unique<FakeWorkerServer>(workers_.back().get()));
      addresses_.push_back(servers_.back()->address());
    }
  }

  std::vector<std::unique_ptr<FakeWorkerService>> workers_;
  std::vector<std::unique_ptr<FakeWorkerServer>> servers_;
  std::vector<std::string> addresses_;
};

TEST_F(WorkerGroupTest, StepFansOutAndReturnsRankZeroTokens) {
  WorkerGroup group(addresses_);
  v1::JoinRequest join;
  join.set_epoch(3);
  join.set_world_size(2);
  join.set_model_fingerprint("fp1-same");
  ASSERT_TRUE(group.Join(join, absl::Seconds(5)).ok());
  v1::StepRequest req;
  req.set_step_id(7);
  req.set_epoch(3);
  for (int i = 0; i < 3; ++i) {
    v1::SequenceInput* s = req.add_seqs();
    s->set_seq_id(10 + i);
    s->add_tokens(100 * i);
    s->set_sample(true);
  }
  absl::StatusOr<v1::StepResponse> r = group.Step(req, absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(workers_[0]->steps.load(), 1);
  EXPECT_EQ(workers_[1]->steps.load(), 1);
  ASSERT_EQ(r->tokens_size(), 3);
  EXPECT_EQ(r->tokens(2).seq_id(), 12u);
  EXPECT_EQ(r->tokens(2).token(), 201);
  EXPECT_DOUBLE_EQ(r->engine_seconds(), 0.002);  // the slower rank's
  ASSERT_TRUE(group.Free({1, 2, 3}).ok());
  EXPECT_EQ(workers_[0]->freed.load() + workers_[1]->freed.load(), 6);
}

TEST_F(WorkerGroupTest, FailuresNameTheRankAndCarryIt) {
  workers_[1]->fail_steps = true;
  WorkerGroup group(addresses_);
  absl::StatusOr<v1::StepResponse> r = group.Step(v1::StepRequest(), absl::Seconds(5));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("rank 1"));
  ASSERT_TRUE(r.status().GetPayload("tpserve.rank").has_value());
  EXPECT_EQ(std::string(*r.status().GetPayload("tpserve.rank")), "1");

  servers_[0]->Shutdown();
  std::vector<absl::StatusOr<v1::HealthResponse>> h = group.Health(absl::Seconds(2));
  EXPECT_FALSE(h[0].ok());
  EXPECT_THAT(std::string(h[0].status().message()), HasSubstr("rank 0"));
  EXPECT_TRUE(h[1].ok());
}

TEST_F(WorkerGroupTest, JoinReportsARefusalNamingTheRank) {
  workers_[1]->fingerprint = "fp1-other";
  WorkerGroup group(addresses_);
  v1::JoinRequest join;
  join.set_epoch(1);
  join.set_world_size(2);
  join.set_model_fingerprint("fp1-same");
  absl::Status s = group.Join(join, absl::Seconds(5));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("rank 1"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("fingerprint"));
}

TEST_F(WorkerGroupTest, SlowStepTimesOutAsDeadlineExceeded) {
  workers_[0]->step_delay = absl::Seconds(2);
  WorkerGroup group(addresses_);
  absl::StatusOr<v1::StepResponse> r = group.Step(v1::StepRequest(), absl::Milliseconds(300));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
}

TEST(WorkerGroupUnreachableTest, InfoOfAnUnreachableWorkerNamesIt) {
  WorkerGroup group({"127.0.0.1:1"});
  std::vector<absl::StatusOr<v1::InfoResponse>> infos = group.Info(absl::Milliseconds(300));
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_FALSE(infos[0].ok());
  EXPECT_THAT(std::string(infos[0].status().message()), HasSubstr("127.0.0.1:1"));
}

}  // namespace
}  // namespace tpserve
