// The cluster mTLS flags both binaries take (--cluster_ca_file,
// --cluster_cert_file, --cluster_key_file) and the ClusterTls they describe.
// The router and the workers must be given certificates from the same CA.
//
//   TPS_ASSIGN_OR_RETURN(const ClusterTls cluster_tls, ClusterTlsFromFlags());
//   builder.AddListeningPort(address, cluster_tls.ServerCredentials(), &port);
#ifndef TPSERVE_COMMON_CLUSTER_TLS_FLAGS_H_
#define TPSERVE_COMMON_CLUSTER_TLS_FLAGS_H_

#include "absl/status/statusor.h"
#include "common/tls_config.h"

namespace tpserve {

// Plaintext (enabled() == false) when none of the flags is set; refuses a
// partial set, a missing or non-PEM file, or a key others can read.
[[nodiscard]] absl::StatusOr<ClusterTls> ClusterTlsFromFlags();

}  // namespace tpserve

#endif  // TPSERVE_COMMON_CLUSTER_TLS_FLAGS_H_
