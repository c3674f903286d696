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

absl::StatusOr<std::string> Rendezvous::Lookup(int group, int rank) {
  absl::StatusOr<std::string> addr =
      client_->Get(WorkerKey(session_, group, rank), absl::Milliseconds(1));
  if (!addr.ok() && addr.status().code() == absl::StatusCode::kDeadlineExceeded) {
    return absl::NotFoundError(absl::StrCat("worker rank ", rank, " of group ", group,
                                            " has not registered at rendezvous port ", port()));
  }
  return addr;
}

}  // namespace tpserve
