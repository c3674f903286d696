#include "router/cluster/rendezvous.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"

namespace tpserve {

Rendezvous::Rendezvous() {
  std::random_device rd;
  session_ = absl::StrFormat("%08x%08x", rd(), rd());
}

Rendezvous::~Rendezvous() { server_.Stop(); }

absl::Status Rendezvous::Start(const std::string& host, int port) {
  TPS_RETURN_IF_ERROR(
      Annotate(server_.Start(host, port), absl::StrCat("rendezvous store on ", host, ":", port)));
  client_ = std::make_unique<TcpKvStoreClient>("127.0.0.1", server_.port());
  return client_->Set(kSessionKey, session_);
}

absl::StatusOr<std::string> Rendezvous::Lookup(int rank) {
  absl::StatusOr<std::string> addr =
      client_->Get(WorkerKey(session_, rank), absl::Milliseconds(1));
  if (!addr.ok() && addr.status().code() == absl::StatusCode::kDeadlineExceeded) {
    return absl::NotFoundError(absl::StrCat("worker rank ", rank,
                                            " has not registered at rendezvous port ", port()));
  }
  return addr;
}

absl::StatusOr<std::vector<std::string>> Rendezvous::WaitForWorkers(
    int world_size, absl::Duration timeout,
    const std::function<void(const std::string&)>& progress) {
  std::vector<std::string> addresses;
  const absl::Time give_up = absl::Now() + timeout;
  for (int r = 0; r < world_size; ++r) {
    progress(absl::StrCat("waiting for worker rank ", r, " of ", world_size,
                          " to register at rendezvous port ", port()));
    absl::StatusOr<std::string> addr = client_->Get(
        WorkerKey(session_, r), std::max(give_up - absl::Now(), absl::Milliseconds(1)));
    if (!addr.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "worker rank ", r, " did not register within ", absl::FormatDuration(timeout),
          "; start it with --rendezvous=<router host>:", port(), " --rank=", r,
          " --world_size=", world_size, " (", addr.status().message(), ")"));
    }
    progress(absl::StrCat("worker rank ", r, " registered at ", *addr));
    addresses.push_back(*addr);
  }
  return addresses;
}

}  // namespace tpserve
