// Names in the rendezvous store that the router and the workers share. The
// router publishes its session under kSessionKey (new at every router
// start); each worker publishes its gRPC address under WorkerKey(session,
// group, rank); the ranks of one group epoch build their communicator under
// EpochPrefix(session, epoch, backend), fresh per epoch, so a group that
// re-forms never reads an earlier epoch's addresses. Epoch numbers are unique
// across the router's groups, so groups never share a prefix either.
//
//   store.Set(WorkerKey(session, /*group=*/0, /*rank=*/1), "10.0.0.2:50062");
#ifndef TPSERVE_RENDEZVOUS_KEYS_H_
#define TPSERVE_RENDEZVOUS_KEYS_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace tpserve {

inline constexpr char kSessionKey[] = "tpserve/session";

// Group 0 keeps the single-group name, so one-group clusters read as before.
inline std::string WorkerKey(const std::string& session, int group, int rank) {
  if (group == 0) return absl::StrCat("tpserve/", session, "/worker/", rank);
  return absl::StrCat("tpserve/", session, "/group/", group, "/worker/", rank);
}

inline std::string EpochPrefix(const std::string& session, uint64_t epoch,
                               const std::string& backend) {
  return absl::StrCat("tpserve/", session, "/epoch/", epoch, "/", backend);
}

}  // namespace tpserve

#endif  // TPSERVE_RENDEZVOUS_KEYS_H_
