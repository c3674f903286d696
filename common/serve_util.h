// Start-up plumbing shared by tpserve-router and tpserve-worker.
//
//   TPS_ASSIGN_OR_RETURN(auto exposer, StartMetricsExposer("0.0.0.0:9400", "--metrics_port"));
//   WritePortFile("/tmp/ports.json", {{"grpc_port", 50051}, {"metrics_port", 9400}});
#ifndef TPSERVE_COMMON_SERVE_UTIL_H_
#define TPSERVE_COMMON_SERVE_UTIL_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/exposer.h"

namespace tpserve {

// Serves /metrics on `address` ("host:port"); UNAVAILABLE naming the address
// and `flag` when it cannot bind (prometheus-cpp reports it by exception).
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetricsExposer(
    const std::string& address, const std::string& flag);

// Writes {"name": port, ...} to `path` atomically (temp file + rename), for
// tests and scripts that start a process on port 0. No-op for an empty path.
void WritePortFile(const std::string& path, const std::vector<std::pair<std::string, int>>& ports);

}  // namespace tpserve

#endif  // TPSERVE_COMMON_SERVE_UTIL_H_
