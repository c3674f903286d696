// Gloo implementation of Communicator: CPU ranks as separate processes
// (possibly on separate hosts) talking TCP, rendezvousing through a KvStore
// the caller provides (the router's TcpKvStoreServer, or a test's).
//
// Before Gloo's rendezvous every rank publishes its world size under
// `<prefix>/member/<rank>` and checks that all ranks agree, so a rank started
// with a different world size fails with INVALID_ARGUMENT instead of hanging.
// Gloo's errors (a peer's socket closing, a per-op timeout) become
// UNAVAILABLE / DEADLINE_EXCEEDED, and the communicator stays broken after.
//
//   TcpKvStoreClient store("10.0.0.1", 29500);
//   GlooOptions opts;
//   opts.hostname = "127.0.0.1";  // address this rank listens on
//   absl::StatusOr<std::unique_ptr<Communicator>> comm =
//       CreateGlooCommunicator(store, rank, world_size, opts);
#ifndef TPSERVE_WORKER_COMM_GLOO_GLOO_COMMUNICATOR_H_
#define TPSERVE_WORKER_COMM_GLOO_GLOO_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rendezvous/kv_store.h"
#include "worker/comm/communicator.h"

namespace tpserve {

struct GlooOptions {
  // Address (host name or IP) this rank binds and advertises to its peers.
  std::string hostname = "127.0.0.1";
  // Default end-to-end timeout of every collective.
  absl::Duration timeout = absl::Seconds(30);
  // How long to wait for all ranks to show up in the store.
  absl::Duration rendezvous_timeout = absl::Seconds(60);
  // Key prefix in the store; distinct groups (or restarts) use distinct ones.
  std::string prefix = "tpserve/gloo";
};

// Connects rank `rank` of `world_size` to its peers. World size 1 needs no
// store traffic and no sockets. `store` must outlive the call only. Sets
// SIGPIPE to ignored for the process (Gloo's socket writes would otherwise
// let a dead peer kill this rank).
absl::StatusOr<std::unique_ptr<Communicator>> CreateGlooCommunicator(KvStore& store, int rank,
                                                                     int world_size,
                                                                     const GlooOptions& options);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_COMM_GLOO_GLOO_COMMUNICATOR_H_
