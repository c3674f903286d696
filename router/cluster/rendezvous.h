// Rendezvous: the router hosts the key-value store the worker ranks meet in.
// Each worker publishes its gRPC address under WorkerKey(session, group, rank) and
// builds its Gloo group under the session's prefix, so the router only needs
// to know the world size: it learns every rank's address from the store.
// A fresh session id per router start keeps a restarted cluster's Gloo keys
// apart from a previous one's; within a session every group epoch has its own
// key prefix (worker/service/registrar.h defines the same key names on the
// worker side).
//
//   Rendezvous rdv;
//   TPS_RETURN_IF_ERROR(rdv.Start("0.0.0.0", 29500));
//   absl::StatusOr<std::string> rank1 = rdv.Lookup(/*group=*/0, 1);  // NOT_FOUND until it
//   registers
//
// Worker side (worker/service): read kSessionKey, Set(WorkerKey(session, group, rank)).
#ifndef TPSERVE_ROUTER_CLUSTER_RENDEZVOUS_H_
#define TPSERVE_ROUTER_CLUSTER_RENDEZVOUS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"
#include "rendezvous/grpc_kv_store.h"
#include "rendezvous/keys.h"

namespace tpserve {

class Rendezvous {
 public:
  Rendezvous();
  ~Rendezvous();

  // Listens on host:port (0 = any free port) and publishes a new session id.
  // `credentials` null = plaintext; the router passes the cluster mTLS ones
  // (common/tls_config.h), so only cluster members can read or register.
  [[nodiscard]] absl::Status Start(const std::string& host, int port,
                                   std::shared_ptr<grpc::ServerCredentials> credentials = nullptr);
  int port() const { return server_.port(); }
  const std::string& session() const { return session_; }

  // The address rank `rank` of group `group` registered in this session
  // (workers re-publish it when they restart); NOT_FOUND if it has not
  // registered.
  [[nodiscard]] absl::StatusOr<std::string> Lookup(int group, int rank);

 private:
  GrpcKvStoreServer server_;
  std::string session_;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_CLUSTER_RENDEZVOUS_H_
