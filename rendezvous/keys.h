// Names in the rendezvous store that the router and the workers share. The
// router publishes its session under kSessionKey (new at every router
// start); each worker publishes its gRPC address under WorkerKey(session,
// rank); the ranks of one group epoch build their communicator under
// EpochPrefix(session, epoch, backend), fresh per epoch, so a group that
// re-forms never reads an earlier epoch's addresses.
//
//   store.Set(WorkerKey(session, 1), "10.0.0.2:50062");
#ifndef TPSERVE_RENDEZVOUS_KEYS_H_
#define TPSERVE_RENDEZVOUS_KEYS_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace tpserve {

inline constexpr char kSessionKey[] = "tpserve/session";

inline std::string WorkerKey(const std::string& session, int rank) {
  return absl::StrCat("tpserve/", session, "/worker/", rank);
}

inline std::string EpochPrefix(const std::string& session, uint64_t epoch,
                               const std::string& backend) {
  return absl::StrCat("tpserve/", session, "/epoch/", epoch, "/", backend);
}

}  // namespace tpserve

#endif  // TPSERVE_RENDEZVOUS_KEYS_H_
