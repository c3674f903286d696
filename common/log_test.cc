#include "common/log.h"

#include <cstdio>
#include <string>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

TEST(LogTest, WritesTaggedTimestampedLine) {
  testing::internal::CaptureStderr();
  SetLogTag("worker 3");
  Log("listening on 127.0.0.1:5000");
  const std::string out = testing::internal::GetCapturedStderr();
  // "HH:MM:SS.mmm [worker 3] listening on 127.0.0.1:5000\n"
  ASSERT_EQ(out.size(), 13 + std::string("[worker 3] listening on 127.0.0.1:5000\n").size());
  EXPECT_EQ(out[2], ':');
  EXPECT_EQ(out[5], ':');
  EXPECT_EQ(out[8], '.');
  EXPECT_EQ(out.substr(13), "[worker 3] listening on 127.0.0.1:5000\n");
}

}  // namespace
}  // namespace tpserve
