// A plaintext gRPC port that serves only grpc.health.v1.Health, mirroring the
// statuses of a process's main server. Kubelet gRPC probes cannot do TLS, so
// a router whose public port is TLS, or a worker whose port requires the
// cluster's client certificates, answers its probes here (docs/security.md:
// it tells anyone who reaches it only SERVING or NOT_SERVING).
//
//   TPS_ASSIGN_OR_RETURN(std::unique_ptr<HealthPort> probes,
//                        HealthPort::Start("0.0.0.0", 50050, server->GetHealthCheckService()));
//   grpc::HealthCheckServiceInterface* health = probes->health();  // sets both
//   health->SetServingStatus(false);
#ifndef TPSERVE_COMMON_HEALTH_PORT_H_
#define TPSERVE_COMMON_HEALTH_PORT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"

namespace tpserve {

class HealthPort {
 public:
  // Listens on host:port (0 = a free port; negative = no port: health()
  // then sets `primary` only). Call after grpc::EnableDefaultHealthCheckService.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<HealthPort>> Start(
      const std::string& host, int port, grpc::HealthCheckServiceInterface* primary);
  ~HealthPort();  // shuts the port down

  // The bound port; -1 when there is none.
  int port() const { return port_; }
  // Sets a status on the main server's health service and on this port's.
  grpc::HealthCheckServiceInterface* health() { return &fanout_; }

 private:
  class Fanout final : public grpc::HealthCheckServiceInterface {
   public:
    void SetServingStatus(const std::string& service_name, bool serving) override;
    void SetServingStatus(bool serving) override;
    void Shutdown() override;

    std::vector<grpc::HealthCheckServiceInterface*> targets;
  };

  HealthPort() = default;

  Fanout fanout_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = -1;
};

}  // namespace tpserve

#endif  // TPSERVE_COMMON_HEALTH_PORT_H_
