// Shared-memory implementation of Communicator for ranks on one host: every
// collective is a copy into this rank's slot of a POSIX shared-memory
// segment, a barrier, and a read of the other slots. Compared with Gloo over
// loopback TCP it avoids the socket round trips and Gloo's event-loop thread
// hand-offs, which dominate decode steps (61 small all-reduces per token on
// the default model).
//
// Sums are computed by every rank in rank order, so all ranks get
// bit-identical results. Waiting spins briefly, then yields the CPU (ranks
// often share cores). A peer that exits is detected within milliseconds
// (its pid disappears), a stalled one at the timeout; either way the segment
// is marked failed and every rank's collectives return errors from then on.
// Abort() marks it failed too.
//
// Rendezvous: rank 0 creates the segment and publishes its name and host in
// the KvStore; other ranks must be on the same host (FAILED_PRECONDITION
// otherwise, so the caller can fall back to Gloo).
//
//   absl::StatusOr<std::unique_ptr<Communicator>> comm =
//       CreateShmCommunicator(store, rank, world_size, ShmOptions());
#ifndef TPSERVE_WORKER_COMM_SHM_SHM_COMMUNICATOR_H_
#define TPSERVE_WORKER_COMM_SHM_SHM_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rendezvous/kv_store.h"
#include "worker/comm/communicator.h"

namespace tpserve {

struct ShmOptions {
  absl::Duration timeout = absl::Seconds(30);  // per collective
  absl::Duration rendezvous_timeout = absl::Seconds(60);
  std::string prefix = "tpserve/shm";   // key prefix in the store
  size_t slot_bytes = size_t{4} << 20;  // per-rank staging buffer
};

absl::StatusOr<std::unique_ptr<Communicator>> CreateShmCommunicator(KvStore& store, int rank,
                                                                    int world_size,
                                                                    const ShmOptions& options);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_COMM_SHM_SHM_COMMUNICATOR_H_
