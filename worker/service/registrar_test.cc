#include "worker/service/registrar.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "rendezvous/keys.h"
#include "rendezvous/tcp_kv_store.h"

namespace tpserve {
namespace {

TEST(RegistrarTest, RegistersAndRegistersAgainWhenTheRouterRestarts) {
  auto server = std::make_unique<TcpKvStoreServer>();
  ASSERT_TRUE(server->Start("127.0.0.1", 0).ok());
  const int port = server->port();
  TcpKvStoreClient router("127.0.0.1", port);
  ASSERT_TRUE(router.Set(kSessionKey, "first").ok());

  absl::Mutex mu;
  std::vector<std::string> lines;
  Registrar reg(
      "127.0.0.1", port, /*rank=*/1, "10.1.2.3:5000",
      [&](const std::string& l) {
        absl::MutexLock lock(&mu);
        lines.push_back(l);
      },
      absl::Milliseconds(100));
  reg.Start();
  absl::StatusOr<std::string> addr = router.Get(WorkerKey("first", 0, 1), absl::Seconds(10));
  ASSERT_TRUE(addr.ok()) << addr.status();
  EXPECT_EQ(*addr, "10.1.2.3:5000");

  // The router restarts on the same port with a new session.
  server.reset();
  absl::SleepFor(absl::Milliseconds(300));  // the registrar sees the outage
  server = std::make_unique<TcpKvStoreServer>();
  absl::Status started = server->Start("127.0.0.1", port);
  ASSERT_TRUE(started.ok()) << started;
  TcpKvStoreClient router2("127.0.0.1", port);
  ASSERT_TRUE(router2.Set(kSessionKey, "second").ok());
  addr = router2.Get(WorkerKey("second", 0, 1), absl::Seconds(10));
  ASSERT_TRUE(addr.ok()) << addr.status();
  EXPECT_EQ(*addr, "10.1.2.3:5000");
  const absl::Time until = absl::Now() + absl::Seconds(5);
  while (reg.session() != "second" && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(reg.session(), "second");
  reg.Stop();

  absl::MutexLock lock(&mu);
  bool reregistered = false;
  for (const std::string& l : lines) reregistered |= l.find("re-registered") != std::string::npos;
  EXPECT_TRUE(reregistered);
}

TEST(RegistrarTest, EpochPrefixesAreDistinctPerEpochAndSession) {
  EXPECT_NE(EpochPrefix("s", 1, "gloo"), EpochPrefix("s", 2, "gloo"));
  EXPECT_NE(EpochPrefix("s", 1, "gloo"), EpochPrefix("t", 1, "gloo"));
  EXPECT_EQ(WorkerKey("abc", 0, 3), "tpserve/abc/worker/3");
  EXPECT_EQ(WorkerKey("abc", 2, 3), "tpserve/abc/group/2/worker/3");
}

}  // namespace
}  // namespace tpserve
