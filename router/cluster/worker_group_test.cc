// WorkerGroup against in-process fake Worker services on port 0: readiness
// polling, rank/model agreement checks, concurrent fan-out with rank 0's
// tokens, and errors that name the failing rank.
#include "router/cluster/worker_group.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace tpserve {
namespace {

using ::testing::HasSubstr;

class FakeWorker final : public v1::Worker::Service {
 public:
  FakeWorker(int rank, int world_size, std::shared_ptr<std::atomic<int>> in_step)
      : rank_(rank), world_size_(world_size), in_step_(std::move(in_step)) {}

  grpc::Status Info(grpc::ServerContext*, const v1::InfoRequest*, v1::InfoResponse* r) override {
    r->set_loaded(info_calls_.fetch_add(1) >= loaded_after_);
    r->set_load_progress("fake loading");
    r->set_rank(reported_rank_ >= 0 ? reported_rank_ : rank_);
    r->set_world_size(world_size_);
    r->set_model_name(model_);
    r->set_vocab_size(100);
    r->set_kv_num_blocks(blocks_);
    r->set_kv_block_size(16);
    return grpc::Status::OK;
  }
  grpc::Status Step(grpc::ServerContext*, const v1::StepRequest* req,
                    v1::StepResponse* r) override {
    in_step_->fetch_add(1);
    // A real group all-reduces inside Step: both ranks must be in it at once.
    for (int i = 0; i < 2000 && in_step_->load() < 2; ++i) absl::SleepFor(absl::Milliseconds(1));
    concurrent_ = in_step_->load() >= 2;
    if (fail_) return grpc::Status(grpc::StatusCode::INTERNAL, "boom");
    r->set_step_id(req->step_id());
    r->set_engine_seconds(0.001 * (rank_ + 1));
    if (rank_ == 0) {
      for (const v1::SequenceInput& s : req->seqs()) {
        v1::SampledToken* t = r->add_tokens();
        t->set_seq_id(s.seq_id());
        t->set_token(s.tokens(0) + 1);
      }
    }
    return grpc::Status::OK;
  }
  grpc::Status Free(grpc::ServerContext*, const v1::FreeRequest* req, v1::FreeResponse*) override {
    freed_ += req->seq_ids_size();
    return grpc::Status::OK;
  }
  grpc::Status Health(grpc::ServerContext*, const v1::HealthRequest*,
                      v1::HealthResponse* r) override {
    if (fail_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "dead");
    r->set_loaded(true);
    return grpc::Status::OK;
  }

  int rank_;
  int world_size_;
  int loaded_after_ = 2;
  int reported_rank_ = -1;
  int blocks_ = 100;
  std::string model_ = "m";
  std::atomic<bool> fail_{false};
  std::shared_ptr<std::atomic<int>> in_step_;  // shared by the ranks of one group
  std::atomic<int> info_calls_{0};
  std::atomic<int> freed_{0};
  std::atomic<bool> concurrent_{false};
};

class WorkerGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int r = 0; r < 2; ++r) {
      workers_.push_back(std::make_unique<FakeWorker>(r, 2, in_step_));
      grpc::ServerBuilder b;
      int port = 0;
      b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
      b.RegisterService(workers_.back().get());
      servers_.push_back(b.BuildAndStart());
      addresses_.push_back(absl::StrCat("127.0.0.1:", port));
    }
  }
  void TearDown() override {
    for (auto& s : servers_) s->Shutdown();
  }

  std::shared_ptr<std::atomic<int>> in_step_ = std::make_shared<std::atomic<int>>(0);
  std::vector<std::unique_ptr<FakeWorker>> workers_;
  std::vector<std::unique_ptr<grpc::Server>> servers_;
  std::vector<std::string> addresses_;
  std::vector<std::string> progress_;
  std::function<void(const std::string&)> log_ = [this](const std::string& s) {
    progress_.push_back(s);
  };
};

TEST_F(WorkerGroupTest, WaitsForLoadAndTakesMinimumBlocks) {
  workers_[1]->blocks_ = 80;
  WorkerGroup group(addresses_);
  absl::StatusOr<ClusterInfo> info = group.WaitUntilLoaded(absl::Seconds(20), log_);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->world_size, 2);
  EXPECT_EQ(info->kv_num_blocks, 80);
  EXPECT_EQ(info->kv_block_size, 16);
  EXPECT_FALSE(progress_.empty());  // it reported "loading" while waiting
  EXPECT_THAT(progress_[0], HasSubstr("fake loading"));
}

TEST_F(WorkerGroupTest, RejectsMismatchedRankAndModel) {
  workers_[1]->reported_rank_ = 0;
  WorkerGroup group(addresses_);
  absl::StatusOr<ClusterInfo> info = group.WaitUntilLoaded(absl::Seconds(20), log_);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(info.status().message()), HasSubstr("--rank"));
  workers_[1]->reported_rank_ = -1;
  workers_[1]->model_ = "other";
  info = group.WaitUntilLoaded(absl::Seconds(20), log_);
  EXPECT_THAT(std::string(info.status().message()), HasSubstr("same model"));
}

TEST_F(WorkerGroupTest, StepFansOutConcurrentlyAndReturnsRankZeroTokens) {
  WorkerGroup group(addresses_);
  v1::StepRequest req;
  req.set_step_id(7);
  for (int i = 0; i < 3; ++i) {
    v1::SequenceInput* s = req.add_seqs();
    s->set_seq_id(10 + i);
    s->add_tokens(100 * i);
  }
  absl::StatusOr<v1::StepResponse> r = group.Step(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(workers_[0]->concurrent_ && workers_[1]->concurrent_);
  ASSERT_EQ(r->tokens_size(), 3);
  EXPECT_EQ(r->tokens(2).seq_id(), 12u);
  EXPECT_EQ(r->tokens(2).token(), 201);
  EXPECT_DOUBLE_EQ(r->engine_seconds(), 0.002);  // the slower rank's
  ASSERT_TRUE(group.Free({1, 2, 3}).ok());
  EXPECT_EQ(workers_[0]->freed_.load() + workers_[1]->freed_.load(), 6);
}

TEST_F(WorkerGroupTest, FailuresNameTheRank) {
  workers_[1]->fail_ = true;
  WorkerGroup group(addresses_);
  absl::StatusOr<v1::StepResponse> r = group.Step(v1::StepRequest());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("rank 1"));
  absl::Status h = group.CheckHealth(absl::Seconds(5));
  EXPECT_THAT(std::string(h.message()), HasSubstr("rank 1"));
  workers_[1]->fail_ = false;  // Only rank 0 may fail now: the first failure wins.
  servers_[0]->Shutdown();
  r = group.Step(v1::StepRequest());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("rank 0"));
}

TEST(WorkerGroupTimeoutTest, UnreachableWorkerTimesOutNamingIt) {
  WorkerGroup group({"127.0.0.1:1"});
  std::vector<std::string> log;
  absl::StatusOr<ClusterInfo> info = group.WaitUntilLoaded(
      absl::Milliseconds(300), [&](const std::string& s) { log.push_back(s); });
  EXPECT_EQ(info.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(info.status().message()), HasSubstr("127.0.0.1:1"));
}

}  // namespace
}  // namespace tpserve
