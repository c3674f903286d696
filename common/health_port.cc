#include "common/health_port.h"

#include <chrono>

#include "absl/strings/str_cat.h"

namespace tpserve {

void HealthPort::Fanout::SetServingStatus(const std::string& service_name, bool serving) {
  for (grpc::HealthCheckServiceInterface* t : targets) t->SetServingStatus(service_name, serving);
}

void HealthPort::Fanout::SetServingStatus(bool serving) {
  for (grpc::HealthCheckServiceInterface* t : targets) t->SetServingStatus(serving);
}

void HealthPort::Fanout::Shutdown() {
  for (grpc::HealthCheckServiceInterface* t : targets) t->Shutdown();
}

absl::StatusOr<std::unique_ptr<HealthPort>> HealthPort::Start(
    const std::string& host, int port, grpc::HealthCheckServiceInterface* primary) {
  std::unique_ptr<HealthPort> h(new HealthPort());
  if (primary != nullptr) h->fanout_.targets.push_back(primary);
  if (port < 0) return h;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(host, ":", port), grpc::InsecureServerCredentials(),
                           &h->port_);
  // Nothing is registered: the default health service is the only one.
  h->server_ = builder.BuildAndStart();
  if (h->server_ == nullptr || h->port_ <= 0 || h->server_->GetHealthCheckService() == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", host, ":", port, " for the health port (in use?)"));
  }
  h->fanout_.targets.push_back(h->server_->GetHealthCheckService());
  return h;
}

HealthPort::~HealthPort() {
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  }
}

}  // namespace tpserve
