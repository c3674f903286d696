#include "worker/service/registrar.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "rendezvous/grpc_kv_store.h"
#include "rendezvous/keys.h"

namespace tpserve {

Registrar::Registrar(std::string store_host, int store_port, int rank, std::string address,
                     std::function<void(const std::string&)> log, absl::Duration interval,
                     std::shared_ptr<grpc::ChannelCredentials> credentials)
    : store_host_(std::move(store_host)),
      store_port_(store_port),
      rank_(rank),
      address_(std::move(address)),
      log_(std::move(log)),
      interval_(interval),
      credentials_(credentials != nullptr ? std::move(credentials)
                                          : grpc::InsecureChannelCredentials()) {}

Registrar::~Registrar() { Stop(); }

void Registrar::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Registrar::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

std::string Registrar::session() const {
  absl::MutexLock lock(&mu_);
  return session_;
}

void Registrar::Run() {
  std::unique_ptr<GrpcKvStoreClient> store;
  std::string registered;  // session we published our address in
  bool outage = false;     // logged once per outage, not every retry
  while (!stop_.HasBeenNotified()) {
    if (store == nullptr) {
      store = std::make_unique<GrpcKvStoreClient>(absl::StrCat(store_host_, ":", store_port_),
                                                  credentials_, interval_);
    }
    absl::StatusOr<std::string> session = store->Get(kSessionKey, interval_);
    absl::Status s = session.status();
    if (s.ok() && *session != registered) {
      s = store->Set(WorkerKey(*session, group_, rank_), address_);
      if (s.ok()) {
        log_(absl::StrCat(registered.empty() ? "registered" : "router restarted: re-registered",
                          " as rank ", rank_, group_ != 0 ? absl::StrCat(" of group ", group_) : "",
                          " at ", address_, " (router session ", *session, ")"));
        registered = *session;
        absl::MutexLock lock(&mu_);
        session_ = registered;
      }
    }
    if (!s.ok()) {
      if (!outage) {
        log_(absl::StrCat("rendezvous store ", store_host_, ":", store_port_, " unreachable (",
                          s.message(), "); retrying every ", absl::FormatDuration(interval_)));
      }
      outage = true;
      store.reset();  // reconnect from scratch
      stop_.WaitForNotificationWithTimeout(interval_);
      continue;
    }
    outage = false;
    stop_.WaitForNotificationWithTimeout(interval_);
  }
}

}  // namespace tpserve
