#include "common/status.h"

#include <string>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

absl::StatusOr<int> ParsePositive(int v) {
  if (v <= 0) return absl::InvalidArgumentError("not positive");
  return v;
}

absl::StatusOr<int> Doubled(int v) {
  TPS_ASSIGN_OR_RETURN(int x, ParsePositive(v));
  return 2 * x;
}

absl::Status CheckBoth(int a, int b) {
  TPS_RETURN_IF_ERROR(ParsePositive(a).status());
  TPS_RETURN_IF_ERROR(ParsePositive(b).status());
  return absl::OkStatus();
}

TEST(StatusTest, AssignOrReturnPassesValue) {
  absl::StatusOr<int> r = Doubled(21);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 42);
}

TEST(StatusTest, AssignOrReturnPropagatesError) {
  absl::StatusOr<int> r = Doubled(-1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "not positive");
}

TEST(StatusTest, ReturnIfErrorStopsAtFirstError) {
  EXPECT_TRUE(CheckBoth(1, 2).ok());
  EXPECT_EQ(CheckBoth(1, 0).code(), absl::StatusCode::kInvalidArgument);
}

TEST(StatusTest, AnnotateKeepsCodeAndPrefixesMessage) {
  absl::Status s = Annotate(absl::NotFoundError("no such file"), "model.gguf");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "model.gguf: no such file");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "ctx").ok());
}

}  // namespace
}  // namespace tpserve
