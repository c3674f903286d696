#include "rendezvous/grpc_kv_store.h"

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/tls_config.h"
#include "gtest/gtest.h"

namespace tpserve {
namespace {

std::string Target(const GrpcKvStoreServer& server) {
  return absl::StrCat("127.0.0.1:", server.port());
}

TEST(GrpcKvStoreTest, SetThenGetAcrossClientsAndInProcess) {
  GrpcKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0, grpc::InsecureServerCredentials()).ok());
  ASSERT_GT(server.port(), 0);
  GrpcKvStoreClient a(Target(server), grpc::InsecureChannelCredentials());
  GrpcKvStoreClient b(Target(server), grpc::InsecureChannelCredentials());
  ASSERT_TRUE(a.Set("k", std::string("v\0x", 3)).ok());
  absl::StatusOr<std::string> v = b.Get("k", absl::Seconds(1));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, std::string("v\0x", 3));
  ASSERT_TRUE(server.Set("local", "1").ok());
  EXPECT_EQ(*a.Get("local", absl::Seconds(1)), "1");
  EXPECT_EQ(*server.Get("k", absl::Milliseconds(1)), std::string("v\0x", 3));
}

TEST(GrpcKvStoreTest, GetWaitsForALaterSet) {
  GrpcKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0, grpc::InsecureServerCredentials()).ok());
  GrpcKvStoreClient reader(Target(server), grpc::InsecureChannelCredentials());
  std::thread writer([&] {
    absl::SleepFor(absl::Milliseconds(100));
    GrpcKvStoreClient w(Target(server), grpc::InsecureChannelCredentials());
    ASSERT_TRUE(w.Set("late", "here").ok());
  });
  absl::StatusOr<std::string> v = reader.Get("late", absl::Seconds(5));
  writer.join();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "here");
}

TEST(GrpcKvStoreTest, MissingKeyTimesOutInBoundedTime) {
  GrpcKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0, grpc::InsecureServerCredentials()).ok());
  GrpcKvStoreClient c(Target(server), grpc::InsecureChannelCredentials());
  const absl::Time start = absl::Now();
  absl::StatusOr<std::string> v = c.Get("never", absl::Milliseconds(200));
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(150));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  ASSERT_TRUE(c.Set("x", "1").ok());
  EXPECT_EQ(*c.Get("x", absl::Seconds(1)), "1");
}

TEST(GrpcKvStoreTest, StoppedServerIsAnErrorNotAHang) {
  auto server = std::make_unique<GrpcKvStoreServer>();
  ASSERT_TRUE(server->Start("127.0.0.1", 0, grpc::InsecureServerCredentials()).ok());
  GrpcKvStoreClient c(Target(*server), grpc::InsecureChannelCredentials(), absl::Milliseconds(300));
  ASSERT_TRUE(c.Set("a", "1").ok());
  // A Get waiting on the server when it stops returns instead of hanging.
  std::thread waiter([&] { EXPECT_FALSE(c.Get("absent", absl::Seconds(30)).ok()); });
  absl::SleepFor(absl::Milliseconds(200));
  const absl::Time start = absl::Now();
  server.reset();
  waiter.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_FALSE(c.Get("a", absl::Seconds(1)).ok());
}

TEST(GrpcKvStoreTest, ClientFindsAStoreThatStartsLater) {
  // Reserve a port, free it, then start the store on it after the client asks.
  int port = 0;
  {
    GrpcKvStoreServer probe;
    ASSERT_TRUE(probe.Start("127.0.0.1", 0, grpc::InsecureServerCredentials()).ok());
    port = probe.port();
  }
  GrpcKvStoreServer server;
  std::thread starter([&] {
    absl::SleepFor(absl::Milliseconds(300));
    ASSERT_TRUE(server.Start("127.0.0.1", port, grpc::InsecureServerCredentials()).ok());
    ASSERT_TRUE(server.Set("k", "v").ok());
  });
  GrpcKvStoreClient c(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials(),
                      absl::Seconds(10));
  absl::StatusOr<std::string> v = c.Get("k", absl::Seconds(5));
  starter.join();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "v");
}

// Mutual TLS with certificates made by openssl (tests/tls/make_certs.sh).
class GrpcKvStoreMtlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(absl::StrCat(std::getenv("TEST_TMPDIR"), "/kv_certs"));
    ASSERT_EQ(system(absl::StrCat("mkdir -p ", *dir_).c_str()), 0);
    for (const std::string& args :
         {std::string("ca cluster_ca"), std::string("leaf router cluster_ca"),
          std::string("leaf worker cluster_ca"), std::string("ca rogue_ca"),
          std::string("leaf rogue rogue_ca")}) {
      const size_t space = args.find(' ');
      const std::string cmd = absl::StrCat("tests/tls/make_certs.sh ", args.substr(0, space), " ",
                                           *dir_, " ", args.substr(space + 1));
      ASSERT_EQ(system(cmd.c_str()), 0) << cmd;
    }
  }
  static void TearDownTestSuite() { delete dir_; }

  static ClusterTls Tls(const std::string& ca, const std::string& name) {
    absl::StatusOr<ClusterTls> tls =
        ClusterTls::FromFiles(File(ca + ".crt"), File(name + ".crt"), File(name + ".key"));
    EXPECT_TRUE(tls.ok()) << tls.status();
    return *tls;
  }
  static std::string File(const std::string& name) { return absl::StrCat(*dir_, "/", name); }

  static std::string* dir_;
};

std::string* GrpcKvStoreMtlsTest::dir_ = nullptr;

TEST_F(GrpcKvStoreMtlsTest, OnlyPeersWithAClusterCertificateGetIn) {
  GrpcKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0, Tls("cluster_ca", "router").ServerCredentials()).ok());
  ASSERT_TRUE(server.Set("tpserve/session", "s1").ok());

  GrpcKvStoreClient member(Target(server), Tls("cluster_ca", "worker").ChannelCredentials());
  absl::StatusOr<std::string> v = member.Get("tpserve/session", absl::Seconds(1));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "s1");
  ASSERT_TRUE(member.Set("tpserve/s1/worker/0", "10.0.0.2:1").ok());

  // A certificate from another CA (it trusts the cluster CA, so only the
  // server's check can stop it).
  absl::StatusOr<ClusterTls> rogue =
      ClusterTls::FromFiles(File("cluster_ca.crt"), File("rogue.crt"), File("rogue.key"));
  ASSERT_TRUE(rogue.ok());
  GrpcKvStoreClient intruder(Target(server), rogue->ChannelCredentials(), absl::Seconds(1));
  EXPECT_FALSE(intruder.Get("tpserve/session", absl::Milliseconds(10)).ok());
  EXPECT_FALSE(intruder.Set("tpserve/s1/worker/0", "evil:1").ok());

  // No certificate at all: TLS that trusts the server but presents nothing.
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> anonymous =
      ClientChannelCredentials(File("cluster_ca.crt"), "", "");
  ASSERT_TRUE(anonymous.ok());
  grpc::ChannelArguments args;
  GrpcKvStoreClient no_cert(Target(server), *anonymous, absl::Seconds(1));
  EXPECT_FALSE(no_cert.Get("tpserve/session", absl::Milliseconds(10)).ok());

  // Plaintext.
  GrpcKvStoreClient plain(Target(server), grpc::InsecureChannelCredentials(), absl::Seconds(1));
  EXPECT_FALSE(plain.Get("tpserve/session", absl::Milliseconds(10)).ok());

  // None of them changed what the members see.
  EXPECT_EQ(*server.Get("tpserve/s1/worker/0", absl::Milliseconds(1)), "10.0.0.2:1");
}

TEST_F(GrpcKvStoreMtlsTest, MemberRefusesAStoreWithAForeignCertificate) {
  GrpcKvStoreServer impostor;
  ASSERT_TRUE(impostor.Start("127.0.0.1", 0, Tls("rogue_ca", "rogue").ServerCredentials()).ok());
  ASSERT_TRUE(impostor.Set("tpserve/session", "fake").ok());
  GrpcKvStoreClient member(Target(impostor), Tls("cluster_ca", "worker").ChannelCredentials(),
                           absl::Seconds(1));
  EXPECT_FALSE(member.Get("tpserve/session", absl::Milliseconds(10)).ok());
}

}  // namespace
}  // namespace tpserve
