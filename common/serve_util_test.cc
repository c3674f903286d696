#include "common/serve_util.h"

#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

TEST(ServeUtilTest, PortFileIsJson) {
  const std::string path = std::string(testing::TempDir()) + "/ports.json";
  WritePortFile(path, {{"grpc_port", 5}, {"metrics_port", 7}});
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "{\"grpc_port\": 5, \"metrics_port\": 7}\n");
}

TEST(ServeUtilTest, ATakenMetricsPortIsAnErrorNamingTheFlag) {
  absl::StatusOr<std::unique_ptr<prometheus::Exposer>> first =
      StartMetricsExposer("127.0.0.1:0", "--metrics_port");
  ASSERT_TRUE(first.ok()) << first.status();
  const int port = (*first)->GetListeningPorts().at(0);
  absl::StatusOr<std::unique_ptr<prometheus::Exposer>> second =
      StartMetricsExposer("127.0.0.1:" + std::to_string(port), "--metrics_port");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("--metrics_port"), std::string::npos);
  EXPECT_NE(second.status().message().find(std::to_string(port)), std::string::npos);
}

}  // namespace
}  // namespace tpserve
