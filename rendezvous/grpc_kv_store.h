// The rendezvous store over gRPC, so it carries the cluster's mutual TLS
// (common/tls_config.h) like the Worker service: GrpcKvStoreServer holds the
// map (the router hosts one) and is itself a KvStore for in-process use;
// GrpcKvStoreClient is the KvStore each worker rank uses. Get waits on the
// server until the key exists or the caller's timeout passes, so ranks can
// publish and wait in any order. With mTLS credentials a peer without a
// certificate signed by the cluster CA cannot read or write a key.
//
//   GrpcKvStoreServer server;
//   TPS_RETURN_IF_ERROR(server.Start("0.0.0.0", 29500, ClusterServerCredentials(tls)));
//   GrpcKvStoreClient client("10.0.0.1:29500", ClusterChannelCredentials(tls));
//   TPS_RETURN_IF_ERROR(client.Set("rank1", "10.0.0.2:50062"));
#ifndef TPSERVE_RENDEZVOUS_GRPC_KV_STORE_H_
#define TPSERVE_RENDEZVOUS_GRPC_KV_STORE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "rendezvous/kv_store.h"

namespace tpserve {

class GrpcKvStoreServer : public KvStore {
 public:
  GrpcKvStoreServer();
  ~GrpcKvStoreServer() override;  // Stop()
  GrpcKvStoreServer(const GrpcKvStoreServer&) = delete;
  GrpcKvStoreServer& operator=(const GrpcKvStoreServer&) = delete;

  // Listens on host:port (port 0 picks a free one; see port()) with
  // `credentials` (grpc::InsecureServerCredentials() for a plaintext store).
  [[nodiscard]] absl::Status Start(const std::string& host, int port,
                                   std::shared_ptr<grpc::ServerCredentials> credentials);
  int port() const { return port_; }
  // Wakes every waiting Get (it answers "not found") and stops serving.
  void Stop();

  // In-process access to the same map (the router's own reads and writes).
  [[nodiscard]] absl::Status Set(const std::string& key, const std::string& value) override;
  [[nodiscard]] absl::StatusOr<std::string> Get(const std::string& key,
                                                absl::Duration timeout) override;

 private:
  class Service;
  // Waits up to `timeout` for `key`; false when it is absent or the store stops.
  bool WaitFor(const std::string& key, absl::Duration timeout, std::string* value);

  absl::Mutex mu_;
  std::map<std::string, std::string> data_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

class GrpcKvStoreClient : public KvStore {
 public:
  // `target` is "host:port". Calls wait up to `connect_timeout` for the
  // store to become reachable (the router may start after the ranks).
  GrpcKvStoreClient(const std::string& target,
                    std::shared_ptr<grpc::ChannelCredentials> credentials,
                    absl::Duration connect_timeout = absl::Seconds(30));
  ~GrpcKvStoreClient() override;

  [[nodiscard]] absl::Status Set(const std::string& key, const std::string& value) override;
  [[nodiscard]] absl::StatusOr<std::string> Get(const std::string& key,
                                                absl::Duration timeout) override;

 private:
  struct Stub;
  const std::string target_;
  const absl::Duration connect_timeout_;
  std::unique_ptr<Stub> stub_;
};

}  // namespace tpserve

#endif  // TPSERVE_RENDEZVOUS_GRPC_KV_STORE_H_
