#include "worker/service/registrar.h"

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/tls_config.h"
#include "gtest/gtest.h"
#include "rendezvous/grpc_kv_store.h"
#include "rendezvous/keys.h"

namespace tpserve {
namespace {

TEST(RegistrarTest, RegistersAndRegistersAgainWhenTheRouterRestarts) {
  auto server = std::make_unique<GrpcKvStoreServer>();
  ASSERT_TRUE(server->Start("127.0.0.1", 0, grpc::InsecureServerCredentials()).ok());
  const int port = server->port();
  ASSERT_TRUE(server->Set(kSessionKey, "first").ok());

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
  absl::StatusOr<std::string> addr = server->Get(WorkerKey("first", 0, 1), absl::Seconds(10));
  ASSERT_TRUE(addr.ok()) << addr.status();
  EXPECT_EQ(*addr, "10.1.2.3:5000");

  // The router restarts on the same port with a new session.
  server.reset();
  absl::SleepFor(absl::Milliseconds(300));  // the registrar sees the outage
  server = std::make_unique<GrpcKvStoreServer>();
  absl::Status started = server->Start("127.0.0.1", port, grpc::InsecureServerCredentials());
  ASSERT_TRUE(started.ok()) << started;
  ASSERT_TRUE(server->Set(kSessionKey, "second").ok());
  addr = server->Get(WorkerKey("second", 0, 1), absl::Seconds(10));
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

// Cluster mTLS: a worker whose certificate comes from another CA never gets
// its address into the store; one from the cluster CA does.
TEST(RegistrarTest, OnlyAClusterCertificateRegisters) {
  const std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/certs");
  const std::string make = absl::StrCat("mkdir -p ", dir, " && tests/tls/make_certs.sh ");
  for (const char* args : {"ca D cluster_ca", "leaf D router cluster_ca",
                           "leaf D worker cluster_ca", "ca D rogue_ca", "leaf D rogue rogue_ca"}) {
    std::string cmd = absl::StrCat(make, args);
    cmd.replace(cmd.find(" D "), 3, absl::StrCat(" ", dir, " "));
    ASSERT_EQ(system(cmd.c_str()), 0) << cmd;
  }
  auto tls = [&](const std::string& ca, const std::string& name) {
    absl::StatusOr<ClusterTls> t = ClusterTls::FromFiles(absl::StrCat(dir, "/", ca, ".crt"),
                                                         absl::StrCat(dir, "/", name, ".crt"),
                                                         absl::StrCat(dir, "/", name, ".key"));
    EXPECT_TRUE(t.ok()) << t.status();
    return *t;
  };
  GrpcKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0, tls("cluster_ca", "router").ServerCredentials()).ok());
  ASSERT_TRUE(server.Set(kSessionKey, "s").ok());
  auto quiet = [](const std::string&) {};

  // Trusts the cluster CA (so it would accept the router) but presents a
  // certificate the router does not trust.
  Registrar rogue("127.0.0.1", server.port(), /*rank=*/0, "6.6.6.6:1", quiet,
                  absl::Milliseconds(200), tls("cluster_ca", "rogue").ChannelCredentials());
  rogue.Start();
  EXPECT_FALSE(server.Get(WorkerKey("s", 0, 0), absl::Seconds(3)).ok());
  EXPECT_EQ(rogue.session(), "");
  rogue.Stop();

  Registrar member("127.0.0.1", server.port(), /*rank=*/1, "10.0.0.2:1", quiet,
                   absl::Milliseconds(200), tls("cluster_ca", "worker").ChannelCredentials());
  member.Start();
  absl::StatusOr<std::string> addr = server.Get(WorkerKey("s", 0, 1), absl::Seconds(10));
  ASSERT_TRUE(addr.ok()) << addr.status();
  EXPECT_EQ(*addr, "10.0.0.2:1");
  member.Stop();
}

TEST(RegistrarTest, EpochPrefixesAreDistinctPerEpochAndSession) {
  EXPECT_NE(EpochPrefix("s", 1, "gloo"), EpochPrefix("s", 2, "gloo"));
  EXPECT_NE(EpochPrefix("s", 1, "gloo"), EpochPrefix("t", 1, "gloo"));
  EXPECT_EQ(WorkerKey("abc", 0, 3), "tpserve/abc/worker/3");
  EXPECT_EQ(WorkerKey("abc", 2, 3), "tpserve/abc/group/2/worker/3");
}

}  // namespace
}  // namespace tpserve
