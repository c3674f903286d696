// Request deadlines for the HTTP API. OpenAI's request bodies have no
// deadline field, so an HTTP client sets one with a header, the way gRPC
// clients set theirs on the call:
//
//   x-request-timeout: 2.5        (seconds, > 0; absent = no deadline)
//
// The serving loop ends a request whose deadline passes with
// DEADLINE_EXCEEDED, which the HTTP layer answers 504 (openai_protocol.h).
//
//   TPS_ASSIGN_OR_RETURN(absl::Time deadline,
//                        ParseRequestTimeout(header_or_empty, absl::Now()));
//   path.BuildJob(request, deadline, limits);
#ifndef TPSERVE_ROUTER_API_REQUEST_TIMEOUT_H_
#define TPSERVE_ROUTER_API_REQUEST_TIMEOUT_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tpserve {

// The header's name, as clients send it (HTTP header names are
// case-insensitive; civetweb matches them so).
inline constexpr char kRequestTimeoutHeader[] = "x-request-timeout";

// The longest accepted timeout: a day, far beyond any generation, so that a
// typo (milliseconds given as seconds) is not silently a near-infinite wait.
inline constexpr double kMaxRequestTimeoutSeconds = 86400;

// `value`: the header's value ("" when the header is absent). Returns
// arrival + value seconds, absl::InfiniteFuture() for "", or
// INVALID_ARGUMENT naming the header for anything but a finite decimal
// number in (0, kMaxRequestTimeoutSeconds].
[[nodiscard]] absl::StatusOr<absl::Time> ParseRequestTimeout(absl::string_view value,
                                                             absl::Time arrival);

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_REQUEST_TIMEOUT_H_
