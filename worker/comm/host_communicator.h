// Factory for the CPU communicators by name, so the worker service and tools
// pick a backend from a flag:
//   "gloo": Gloo over TCP, ranks anywhere (the default for a cluster);
//   "shm":  shared memory, all ranks on one host (~6 us vs ~300 us per 16 KB
//           all-reduce between two processes, measured by the comm tests).
//
//   HostCommOptions o;
//   o.backend = "shm";
//   TPS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> c,
//                        CreateHostCommunicator(store, rank, world, o));
#ifndef TPSERVE_WORKER_COMM_HOST_COMMUNICATOR_H_
#define TPSERVE_WORKER_COMM_HOST_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rendezvous/kv_store.h"
#include "worker/comm/communicator.h"

namespace tpserve {

struct HostCommOptions {
  std::string backend = "gloo";        // "gloo" or "shm"
  std::string hostname = "127.0.0.1";  // gloo: address this rank listens on
  absl::Duration timeout = absl::Seconds(30);
  absl::Duration rendezvous_timeout = absl::Seconds(60);
  std::string prefix = "tpserve/comm";  // store key prefix of this group
};

absl::StatusOr<std::unique_ptr<Communicator>> CreateHostCommunicator(
    KvStore& store, int rank, int world_size, const HostCommOptions& options);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_COMM_HOST_COMMUNICATOR_H_
