#include "common/health_port.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"

namespace tpserve {
namespace {

// grpc.health.v1.Health/Check on 127.0.0.1:port over plaintext: 1 SERVING,
// 2 NOT_SERVING, -1 when the call fails. Raw bytes: HealthCheckRequest
// {service = 1}, HealthCheckResponse {status = 1 (varint)}.
int Check(int port, const std::string& service) {
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  std::string request;
  if (!service.empty()) request = absl::StrCat("\x0a", std::string(1, service.size()), service);
  grpc::Slice slice(request);
  grpc::ByteBuffer in(&slice, 1), out;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &in, &out,
                 [&](grpc::Status s) {
                   status = s;
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!status.ok()) return -1;
  std::vector<grpc::Slice> slices;
  if (!out.Dump(&slices).ok() || slices.empty() || slices[0].size() < 2) return 0;
  return slices[0].begin()[1];
}

TEST(HealthPortTest, MirrorsTheMainServersStatuses) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int main_port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &main_port);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  absl::StatusOr<std::unique_ptr<HealthPort>> probes =
      HealthPort::Start("127.0.0.1", 0, server->GetHealthCheckService());
  ASSERT_TRUE(probes.ok()) << probes.status();
  const int port = (*probes)->port();
  ASSERT_GT(port, 0);
  ASSERT_NE(port, main_port);

  grpc::HealthCheckServiceInterface* health = (*probes)->health();
  health->SetServingStatus(false);
  health->SetServingStatus("liveness", true);
  EXPECT_EQ(Check(port, ""), 2);
  EXPECT_EQ(Check(main_port, ""), 2);
  EXPECT_EQ(Check(port, "liveness"), 1);
  health->SetServingStatus(true);
  health->SetServingStatus("liveness", false);
  EXPECT_EQ(Check(port, ""), 1);
  EXPECT_EQ(Check(main_port, ""), 1);
  EXPECT_EQ(Check(port, "liveness"), 2);
  EXPECT_EQ(Check(main_port, "liveness"), 2);
  server->Shutdown();
}

TEST(HealthPortTest, NegativePortMeansOnlyTheMainServer) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int main_port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &main_port);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  absl::StatusOr<std::unique_ptr<HealthPort>> probes =
      HealthPort::Start("127.0.0.1", -1, server->GetHealthCheckService());
  ASSERT_TRUE(probes.ok());
  EXPECT_EQ((*probes)->port(), -1);
  (*probes)->health()->SetServingStatus(false);
  EXPECT_EQ(Check(main_port, ""), 2);
  server->Shutdown();
}

}  // namespace
}  // namespace tpserve
