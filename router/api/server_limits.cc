#include "router/api/server_limits.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "grpc/grpc.h"

namespace tpserve {
namespace {

// gRPC channel args are int milliseconds; "none" is INT_MAX.
int Millis(absl::Duration d) {
  if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) return INT32_MAX;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
}

}  // namespace

void ApplyServerLimits(const PublicServerLimits& limits, grpc::ServerBuilder& builder) {
  builder.SetMaxReceiveMessageSize(limits.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             Millis(limits.min_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, limits.max_ping_strikes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, Millis(limits.max_connection_age));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                             Millis(limits.max_connection_age_grace));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, Millis(limits.max_connection_idle));
}

std::string DescribeServerLimits(const PublicServerLimits& l) {
  return absl::StrCat("max message ", l.max_message_bytes, " B, ", l.max_concurrent_streams,
                      " streams/connection, pings >= ", absl::FormatDuration(l.min_ping_interval),
                      " apart (", l.max_ping_strikes, " strikes), connection age ",
                      absl::FormatDuration(l.max_connection_age), " + ",
                      absl::FormatDuration(l.max_connection_age_grace), " grace, idle ",
                      absl::FormatDuration(l.max_connection_idle));
}

}  // namespace tpserve
