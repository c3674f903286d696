#include "worker/comm/sticky_error.h"

#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tpserve {
namespace {

TEST(StickyError, OkUntilAnErrorIsRecorded) {
  StickyError e;
  EXPECT_TRUE(e.Check().ok());
  e.Record(absl::OkStatus());
  EXPECT_TRUE(e.Check().ok());
}

TEST(StickyError, TheFirstErrorWinsAndIsNamed) {
  StickyError e;
  e.Record(absl::DeadlineExceededError("gloo allreduce on rank 1/2: timeout"));
  e.Record(absl::CancelledError("communicator aborted"));
  const absl::Status s = e.Check();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "communicator is broken by an earlier error: DEADLINE_EXCEEDED: gloo allreduce on "
            "rank 1/2: timeout");
}

TEST(StickyError, ConcurrentRecordsKeepExactlyOne) {
  StickyError e;
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&e, i] { e.Record(absl::InternalError(absl::StrCat("thread ", i))); });
  }
  for (std::thread& t : threads) t.join();
  const absl::Status s = e.Check();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.message(), "INTERNAL: thread "));
}

}  // namespace
}  // namespace tpserve
