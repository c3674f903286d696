#include "router/api/request_timeout.h"

#include <gtest/gtest.h>

namespace tpserve {
namespace {

const absl::Time kArrival = absl::FromUnixSeconds(1'700'000'000);

TEST(RequestTimeoutTest, AbsentHeaderMeansNoDeadline) {
  absl::StatusOr<absl::Time> d = ParseRequestTimeout("", kArrival);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, absl::InfiniteFuture());
}

TEST(RequestTimeoutTest, SecondsAddToArrival) {
  EXPECT_EQ(*ParseRequestTimeout("2.5", kArrival), kArrival + absl::Milliseconds(2500));
  EXPECT_EQ(*ParseRequestTimeout(" 30 ", kArrival), kArrival + absl::Seconds(30));
  EXPECT_EQ(*ParseRequestTimeout("0.001", kArrival), kArrival + absl::Milliseconds(1));
  EXPECT_EQ(*ParseRequestTimeout("86400", kArrival), kArrival + absl::Hours(24));
}

TEST(RequestTimeoutTest, RejectsWhatIsNotAPositiveBoundedNumber) {
  for (const char* bad : {"0", "-1", "abc", "1s", "inf", "nan", "86400.5", "1e9", " ", "1,5"}) {
    absl::StatusOr<absl::Time> d = ParseRequestTimeout(bad, kArrival);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(d.status().message().find("x-request-timeout"), absl::string_view::npos)
        << d.status();
  }
}

TEST(RequestTimeoutTest, ErrorEscapesTheValue) {
  absl::StatusOr<absl::Time> d = ParseRequestTimeout("1\x01", kArrival);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("\\001"), absl::string_view::npos) << d.status();
}

}  // namespace
}  // namespace tpserve
