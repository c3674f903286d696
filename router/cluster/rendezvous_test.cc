#include "router/cluster/rendezvous.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tpserve {
namespace {

using ::testing::HasSubstr;

TEST(RendezvousTest, WorkersRegisterUnderTheSession) {
  Rendezvous rdv;
  ASSERT_TRUE(rdv.Start("127.0.0.1", 0).ok());
  ASSERT_GT(rdv.port(), 0);
  // What a worker does (worker/service/worker_main.cc).
  TcpKvStoreClient worker("127.0.0.1", rdv.port());
  absl::StatusOr<std::string> session = worker.Get(kSessionKey, absl::Seconds(5));
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(*session, rdv.session());
  ASSERT_TRUE(worker.Set(WorkerKey(*session, 1), "10.0.0.2:50062").ok());
  ASSERT_TRUE(worker.Set(WorkerKey(*session, 0), "10.0.0.1:50061").ok());
  std::vector<std::string> log;
  absl::StatusOr<std::vector<std::string>> addrs =
      rdv.WaitForWorkers(2, absl::Seconds(5), [&](const std::string& s) { log.push_back(s); });
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  EXPECT_EQ(*addrs, (std::vector<std::string>{"10.0.0.1:50061", "10.0.0.2:50062"}));
  EXPECT_FALSE(log.empty());
}

TEST(RendezvousTest, MissingRankTimesOutWithInstructions) {
  Rendezvous rdv;
  ASSERT_TRUE(rdv.Start("127.0.0.1", 0).ok());
  absl::StatusOr<std::vector<std::string>> addrs =
      rdv.WaitForWorkers(1, absl::Milliseconds(200), [](const std::string&) {});
  EXPECT_EQ(addrs.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(addrs.status().message()), HasSubstr("--rendezvous="));
  EXPECT_THAT(std::string(addrs.status().message()), HasSubstr("--rank=0"));
}

TEST(RendezvousTest, SessionsDiffer) {
  Rendezvous a, b;
  EXPECT_NE(a.session(), b.session());
}

}  // namespace
}  // namespace tpserve
