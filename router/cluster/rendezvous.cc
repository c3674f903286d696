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

absl::Status Rendezvous::Start(const std::string& host, int port,
                               std::shared_ptr<grpc::ServerCredentials> credentials) {
  if (credentials == nullptr) credentials = grpc::InsecureServerCredentials();
  TPS_RETURN_IF_ERROR(Annotate(server_.Start(host, port, std::move(credentials)),
                               absl::StrCat("rendezvous store on ", host, ":", port)));
  return server_.Set(kSessionKey, session_);
}

absl::StatusOr<std::string> Rendezvous::Lookup(int group, int rank) {
  absl::StatusOr<std::string> addr =
      server_.Get(WorkerKey(session_, group, rank), absl::Milliseconds(1));
  if (!addr.ok() && addr.status().code() == absl::StatusCode::kDeadlineExceeded) {
    return absl::NotFoundError(absl::StrCat("worker rank ", rank, " of group ", group,
                                            " has not registered at rendezvous port ", port()));
  }
  return addr;
}

}  // namespace tpserve
