// TLS credentials for every tpserve channel, built from PEM files with gRPC's
// own TLS stack (no hand-written crypto):
//  - the public port: server TLS, optionally requiring client certificates
//    (mTLS), re-read when the files change (rotation without restart);
//  - the cluster (router <-> worker gRPC and the rendezvous store): mutual
//    TLS where a peer is trusted when its certificate chains to the cluster
//    CA (docs/security.md explains why no host name is checked there);
//  - clients (the tpserve CLI): CA bundle plus an optional client key pair.
// Private key files that group or other can read are refused, as PostgreSQL
// does it (see CheckPrivateKeyFile).
//
//   TPS_ASSIGN_OR_RETURN(auto creds, PublicServerCredentials({cert, key, client_ca}));
//   builder.AddListeningPort("0.0.0.0:50051", creds, &port);
//   TPS_ASSIGN_OR_RETURN(ClusterTls cluster, ClusterTls::FromFiles(ca, cert, key));
//   grpc::CreateChannel(worker, cluster.ChannelCredentials());
#ifndef TPSERVE_COMMON_TLS_CONFIG_H_
#define TPSERVE_COMMON_TLS_CONFIG_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"

namespace tpserve {

// How often watched certificate files are re-read.
inline constexpr absl::Duration kDefaultTlsReloadInterval = absl::Seconds(60);

// OK when `path` (named by `flag` in messages) is a readable private key file
// that other users cannot read and group members can read only when root owns
// it (a Kubernetes Secret mounted with fsGroup is root:fsGroup 0440).
[[nodiscard]] absl::Status CheckPrivateKeyFile(const std::string& path, absl::string_view flag);

struct PublicTlsFiles {
  std::string cert_file;       // PEM certificate chain; empty = plaintext port
  std::string key_file;        // PEM private key
  std::string client_ca_file;  // PEM CA bundle; non-empty = require client certs
  absl::Duration reload_interval = kDefaultTlsReloadInterval;

  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

// Server credentials for the public port: insecure when `files` is not
// enabled; INVALID_ARGUMENT naming the flag when a file is missing, is not
// PEM, or the key is readable by others.
[[nodiscard]] absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> PublicServerCredentials(
    const PublicTlsFiles& files);

// Channel credentials for a client of the public port: insecure when all
// three are empty; TLS trusting `ca_file` (the system roots when empty),
// presenting cert/key when both are given.
[[nodiscard]] absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientChannelCredentials(
    const std::string& ca_file, const std::string& cert_file, const std::string& key_file);

// The cluster's mutual TLS (--cluster_ca_file, --cluster_cert_file,
// --cluster_key_file on both binaries). Disabled (plaintext) when all three
// are empty; all three or none.
class ClusterTls {
 public:
  [[nodiscard]] static absl::StatusOr<ClusterTls> FromFiles(
      const std::string& ca_file, const std::string& cert_file, const std::string& key_file,
      absl::Duration reload_interval = kDefaultTlsReloadInterval);

  bool enabled() const { return !ca_file_.empty(); }
  // Requires and verifies the peer's certificate against the cluster CA.
  std::shared_ptr<grpc::ServerCredentials> ServerCredentials() const;
  // Presents this process's certificate and verifies the server's chain.
  std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials() const;

 private:
  std::string ca_file_, cert_file_, key_file_;
  absl::Duration reload_interval_ = kDefaultTlsReloadInterval;
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider_;
};

}  // namespace tpserve

#endif  // TPSERVE_COMMON_TLS_CONFIG_H_
