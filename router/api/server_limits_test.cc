#include "router/api/server_limits.h"

#include <future>
#include <memory>
#include <string>

#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "gtest/gtest.h"

namespace tpserve {
namespace {

// grpc.health.v1.HealthCheckRequest{service: name} on the wire.
grpc::ByteBuffer HealthRequest(const std::string& name) {
  std::string bytes = "\x0a";
  size_t n = name.size();
  while (n >= 0x80) {
    bytes += static_cast<char>((n & 0x7f) | 0x80);
    n >>= 7;
  }
  bytes += static_cast<char>(n);
  bytes += name;
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

grpc::Status Check(grpc::GenericStub& stub, const std::string& service) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  const grpc::ByteBuffer request = HealthRequest(service);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) { done.set_value(std::move(s)); });
  return done.get_future().get();
}

TEST(ServerLimitsTest, OversizedRequestsAreRefused) {
  grpc::EnableDefaultHealthCheckService(true);
  PublicServerLimits limits;
  limits.max_message_bytes = 1024;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  ApplyServerLimits(limits, builder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  server->GetHealthCheckService()->SetServingStatus("small", true);

  grpc::GenericStub stub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  EXPECT_TRUE(Check(stub, "small").ok());
  const grpc::Status big = Check(stub, std::string(2000, 'x'));
  EXPECT_EQ(big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << big.error_message();
  server->Shutdown();
}

TEST(ServerLimitsTest, DescribesEveryLimit) {
  const std::string text = DescribeServerLimits(PublicServerLimits());
  EXPECT_NE(text.find("max message 4194304 B"), std::string::npos) << text;
  EXPECT_NE(text.find("128 streams/connection"), std::string::npos);
  EXPECT_NE(text.find("connection age 1h + 5m grace"), std::string::npos);
}

}  // namespace
}  // namespace tpserve
