#include "common/cluster_tls_flags.h"

#include <string>

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, cluster_ca_file, "",
          "PEM CA of the cluster: router <-> worker gRPC and the rendezvous store use mutual "
          "TLS, and only peers whose certificate it signed get in (empty with the two below = "
          "plaintext cluster; docs/security.md)");
ABSL_FLAG(std::string, cluster_cert_file, "",
          "PEM certificate (chain) this process presents inside the cluster; re-read when it "
          "changes");
ABSL_FLAG(std::string, cluster_key_file, "",
          "PEM private key of --cluster_cert_file; must not be readable by other users");

namespace tpserve {

absl::StatusOr<ClusterTls> ClusterTlsFromFlags() {
  return ClusterTls::FromFiles(absl::GetFlag(FLAGS_cluster_ca_file),
                               absl::GetFlag(FLAGS_cluster_cert_file),
                               absl::GetFlag(FLAGS_cluster_key_file));
}

}  // namespace tpserve
