#include "worker/comm/swappable_communicator.h"

#include <atomic>
#include <memory>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

// Adds `add` to every element of an all-reduce; counts aborts.
class FakeComm final : public Communicator {
 public:
  FakeComm(float add, std::atomic<int>* aborts) : add_(add), aborts_(aborts) {}
  int rank() const override { return 1; }
  int world_size() const override { return 2; }
  std::string backend() const override { return "gloo"; }
  absl::Status AllReduceSum(void* buf, size_t count, CommDType, const CollectiveOptions&) override {
    if (aborted_) return absl::CancelledError("aborted");
    for (size_t i = 0; i < count; ++i) static_cast<float*>(buf)[i] += add_;
    return absl::OkStatus();
  }
  absl::Status AllGather(const void*, void*, size_t, CommDType, const CollectiveOptions&) override {
    return absl::OkStatus();
  }
  absl::Status Broadcast(void*, size_t, CommDType, int, const CollectiveOptions&) override {
    return absl::OkStatus();
  }
  absl::Status Barrier(const CollectiveOptions&) override { return absl::OkStatus(); }
  absl::Status Synchronize(void*) override { return absl::OkStatus(); }
  void Abort() override {
    aborted_ = true;
    aborts_->fetch_add(1);
  }

 private:
  const float add_;
  std::atomic<int>* aborts_;
  bool aborted_ = false;
};

TEST(SwappableCommunicatorTest, FailsUntilSetThenForwardsToTheCurrentImplementation) {
  SwappableCommunicator comm(1, 2, "gloo");
  Communicator& c = comm;
  float x = 1.0f;
  absl::Status s = c.AllReduceSum(&x, 1, CommDType::kF32);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("not in a group epoch"), std::string::npos) << s;
  EXPECT_FALSE(comm.joined());

  std::atomic<int> aborts{0};
  comm.Set(std::make_unique<FakeComm>(10.0f, &aborts));
  EXPECT_TRUE(comm.joined());
  ASSERT_TRUE(c.AllReduceSum(&x, 1, CommDType::kF32).ok());
  EXPECT_EQ(x, 11.0f);

  // A new epoch: the old implementation is aborted, the new one answers.
  comm.Set(std::make_unique<FakeComm>(100.0f, &aborts));
  EXPECT_EQ(aborts.load(), 1);
  ASSERT_TRUE(c.AllReduceSum(&x, 1, CommDType::kF32).ok());
  EXPECT_EQ(x, 111.0f);
  EXPECT_EQ(c.backend(), "gloo");
  EXPECT_EQ(c.rank(), 1);
  EXPECT_EQ(c.world_size(), 2);
}

TEST(SwappableCommunicatorTest, AbortReachesTheCurrentImplementationAndClearDropsIt) {
  SwappableCommunicator comm(1, 2, "gloo");
  comm.Abort();  // nothing installed: a no-op
  std::atomic<int> aborts{0};
  comm.Set(std::make_unique<FakeComm>(1.0f, &aborts));
  comm.Abort();
  EXPECT_EQ(aborts.load(), 1);
  float x = 0;
  EXPECT_EQ(static_cast<Communicator&>(comm).AllReduceSum(&x, 1, CommDType::kF32).code(),
            absl::StatusCode::kCancelled);
  comm.Clear();
  EXPECT_FALSE(comm.joined());
  EXPECT_EQ(static_cast<Communicator&>(comm).AllReduceSum(&x, 1, CommDType::kF32).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace tpserve
