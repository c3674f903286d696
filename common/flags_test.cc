#include "common/flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "gtest/gtest.h"

ABSL_FLAG(int, flags_test_batch, 16, "Sequences per step");
ABSL_FLAG(bool, flags_test_ignore_eos, false, "Keep going past end-of-sequence");

namespace tpserve {
namespace {

TEST(FlagsTest, HelpListsOwnFlagsWithDefaultsAndNotAbslOnes) {
  const std::string help = FlagsHelp("usage: demo --flags_test_batch N");
  EXPECT_EQ(help.rfind("usage: demo --flags_test_batch N\n", 0), 0u) << help;
  EXPECT_NE(help.find("  --flags_test_batch (default: 16)\n      Sequences per step\n"),
            std::string::npos)
      << help;
  EXPECT_NE(help.find("  --flags_test_ignore_eos (default: false)"), std::string::npos) << help;
  EXPECT_EQ(help.find("--flagfile"), std::string::npos) << help;
  EXPECT_LT(help.find("--flags_test_batch"), help.find("--flags_test_ignore_eos"));
}

TEST(FlagsTest, ParsesOwnFlags) {
  char prog[] = "demo", batch[] = "--flags_test_batch=4", eos[] = "--flags_test_ignore_eos",
       pos[] = "extra";
  char* argv[] = {prog, batch, eos, pos};
  const std::vector<char*> args = ParseFlags(4, argv, "usage: demo");
  EXPECT_EQ(absl::GetFlag(FLAGS_flags_test_batch), 4);
  EXPECT_TRUE(absl::GetFlag(FLAGS_flags_test_ignore_eos));
  ASSERT_EQ(args.size(), 2u);
  EXPECT_EQ(std::string(args[1]), "extra");
}

TEST(FlagsTest, HelpExitsZeroAndUnknownFlagExitsTwo) {
  char prog[] = "demo", help[] = "--help", bogus[] = "--bogus=1";
  char* help_argv[] = {prog, help};
  EXPECT_EXIT(ParseFlags(2, help_argv, "usage: demo"), testing::ExitedWithCode(0), "");
  char* bogus_argv[] = {prog, bogus};
  EXPECT_EXIT(ParseFlags(2, bogus_argv, "usage: demo"), testing::ExitedWithCode(2),
              "unknown flag --bogus");
}

}  // namespace
}  // namespace tpserve
