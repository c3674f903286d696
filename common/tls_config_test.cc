#include "common/tls_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "gtest/gtest.h"

namespace tpserve {
namespace {

// Certificates made by tests/tls/make_certs.sh (openssl) in a fresh folder.
class TlsConfigTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(absl::StrCat(std::getenv("TEST_TMPDIR"), "/certs"));
    ASSERT_EQ(system(absl::StrCat("mkdir -p ", *dir_).c_str()), 0);
    const std::string script = "tests/tls/make_certs.sh";
    for (const std::string& args :
         {absl::StrCat("ca ", *dir_, " ca"), absl::StrCat("leaf ", *dir_, " server ca"),
          absl::StrCat("ca ", *dir_, " other_ca")}) {
      ASSERT_EQ(system(absl::StrCat(script, " ", args).c_str()), 0) << args;
    }
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string File(const std::string& name) { return absl::StrCat(*dir_, "/", name); }

  // A server with only the health service on a free port.
  std::unique_ptr<grpc::Server> StartServer(std::shared_ptr<grpc::ServerCredentials> creds,
                                            int* port) {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", std::move(creds), port);
    return builder.BuildAndStart();
  }

  static bool Connects(int port, std::shared_ptr<grpc::ChannelCredentials> creds) {
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), creds, args);
    return channel->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(3)));
  }

  static std::string* dir_;
};

std::string* TlsConfigTest::dir_ = nullptr;

TEST_F(TlsConfigTest, OwnerOnlyKeyIsAccepted) {
  ASSERT_EQ(chmod(File("server.key").c_str(), 0600), 0);
  EXPECT_TRUE(CheckPrivateKeyFile(File("server.key"), "--tls_key_file").ok());
}

TEST_F(TlsConfigTest, WorldReadableKeyIsRefusedWithTheFix) {
  const std::string key = File("world.key");
  ASSERT_EQ(system(absl::StrCat("cp ", File("server.key"), " ", key).c_str()), 0);
  ASSERT_EQ(chmod(key.c_str(), 0644), 0);
  absl::Status s = CheckPrivateKeyFile(key, "--tls_key_file");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("0644"), std::string::npos) << s;
  EXPECT_NE(s.message().find("other users"), std::string::npos) << s;
  EXPECT_NE(s.message().find(absl::StrCat("chmod 600 ", key)), std::string::npos) << s;
  // The same refusal reaches every entry point.
  PublicTlsFiles files{File("server.crt"), key, ""};
  EXPECT_EQ(PublicServerCredentials(files).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ClusterTls::FromFiles(File("ca.crt"), File("server.crt"), key).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(TlsConfigTest, GroupReadableKeyIsRefusedUnlessRootOwnsIt) {
  const std::string key = File("group.key");
  ASSERT_EQ(system(absl::StrCat("cp ", File("server.key"), " ", key).c_str()), 0);
  ASSERT_EQ(chmod(key.c_str(), 0640), 0);
  if (geteuid() == 0) {
    // Root-owned 0640 is how a Secret mounted with fsGroup looks: accepted.
    ASSERT_EQ(chown(key.c_str(), 0, 0), 0);
    EXPECT_TRUE(CheckPrivateKeyFile(key, "--tls_key_file").ok());
    ASSERT_EQ(chown(key.c_str(), 65534, 65534), 0);
  }
  absl::Status s = CheckPrivateKeyFile(key, "--cluster_key_file");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_NE(s.message().find("its group"), std::string::npos) << s;
  EXPECT_NE(s.message().find("--cluster_key_file"), std::string::npos) << s;
}

TEST_F(TlsConfigTest, MissingOrWrongFilesAreNamed) {
  absl::Status s = CheckPrivateKeyFile(File("nope.key"), "--tls_key_file");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("nope.key"), std::string::npos) << s;
  // A certificate given where the key belongs.
  const std::string not_key = File("cert_as_key.pem");
  ASSERT_EQ(system(absl::StrCat("cp ", File("server.crt"), " ", not_key).c_str()), 0);
  ASSERT_EQ(chmod(not_key.c_str(), 0600), 0);
  s = CheckPrivateKeyFile(not_key, "--tls_key_file");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("PRIVATE KEY"), std::string::npos) << s;
  // Flags that only make sense together.
  EXPECT_FALSE(PublicServerCredentials({File("server.crt"), "", ""}).ok());
  EXPECT_FALSE(PublicServerCredentials({"", "", File("ca.crt")}).ok());
  EXPECT_FALSE(ClusterTls::FromFiles(File("ca.crt"), File("server.crt"), "").ok());
  EXPECT_FALSE(ClientChannelCredentials("", File("server.crt"), "").ok());
}

TEST_F(TlsConfigTest, NothingGivenMeansPlaintext) {
  absl::StatusOr<ClusterTls> cluster = ClusterTls::FromFiles("", "", "");
  ASSERT_TRUE(cluster.ok());
  EXPECT_FALSE(cluster->enabled());
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds = PublicServerCredentials({});
  ASSERT_TRUE(creds.ok());
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartServer(*creds, &port);
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(Connects(port, grpc::InsecureChannelCredentials()));
  server->Shutdown();
}

TEST_F(TlsConfigTest, TlsPortTakesOnlyClientsThatTrustItsCa) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds =
      PublicServerCredentials({File("server.crt"), File("server.key"), ""});
  ASSERT_TRUE(creds.ok()) << creds.status();
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartServer(*creds, &port);
  ASSERT_NE(server, nullptr);
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> trusting =
      ClientChannelCredentials(File("ca.crt"), "", "");
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> other =
      ClientChannelCredentials(File("other_ca.crt"), "", "");
  ASSERT_TRUE(trusting.ok() && other.ok());
  EXPECT_TRUE(Connects(port, *trusting));
  EXPECT_FALSE(Connects(port, *other));
  EXPECT_FALSE(Connects(port, grpc::InsecureChannelCredentials()));
  server->Shutdown();
}

}  // namespace
}  // namespace tpserve
