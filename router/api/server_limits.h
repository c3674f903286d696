// PublicServerLimits: the limits the router's public gRPC port applies to
// every client, so one client cannot hold the server's memory or connections
// without bound. Defaults (documented in docs/operations.md "Public API
// hardening"):
//   max_message_bytes 4 MiB        requests larger are RESOURCE_EXHAUSTED
//   max_concurrent_streams 128     HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection
//   min_ping_interval 10 s         a client pinging more often (without data) ...
//   max_ping_strikes 2             ... twice is sent GOAWAY (keepalive abuse)
//   max_connection_age 1 h         then GOAWAY, so clients re-balance and a
//   max_connection_age_grace 5 min stuck call is cut after the grace
//   max_connection_idle 15 min     connections without calls are closed
//
//   grpc::ServerBuilder builder;
//   ApplyServerLimits(PublicServerLimits(), builder);
#ifndef TPSERVE_ROUTER_API_SERVER_LIMITS_H_
#define TPSERVE_ROUTER_API_SERVER_LIMITS_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "grpcpp/server_builder.h"

namespace tpserve {

struct PublicServerLimits {
  int32_t max_message_bytes = 4 << 20;
  int32_t max_concurrent_streams = 128;
  absl::Duration min_ping_interval = absl::Seconds(10);
  int32_t max_ping_strikes = 2;
  absl::Duration max_connection_age = absl::Hours(1);  // zero or infinite: none
  absl::Duration max_connection_age_grace = absl::Minutes(5);
  absl::Duration max_connection_idle = absl::Minutes(15);  // zero or infinite: none
};

void ApplyServerLimits(const PublicServerLimits& limits, grpc::ServerBuilder& builder);

// One line for the start-up log.
std::string DescribeServerLimits(const PublicServerLimits& limits);

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_SERVER_LIMITS_H_
