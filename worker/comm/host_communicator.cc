#include "worker/comm/host_communicator.h"

#include "absl/strings/str_cat.h"
#include "worker/comm/gloo/gloo_communicator.h"
#include "worker/comm/shm/shm_communicator.h"

namespace tpserve {

absl::StatusOr<std::unique_ptr<Communicator>> CreateHostCommunicator(
    KvStore& store, int rank, int world_size, const HostCommOptions& options) {
  if (options.backend == "gloo") {
    GlooOptions g;
    g.hostname = options.hostname;
    g.timeout = options.timeout;
    g.rendezvous_timeout = options.rendezvous_timeout;
    g.prefix = options.prefix + "/gloo";
    return CreateGlooCommunicator(store, rank, world_size, g);
  }
  if (options.backend == "shm") {
    ShmOptions s;
    s.timeout = options.timeout;
    s.rendezvous_timeout = options.rendezvous_timeout;
    s.prefix = options.prefix + "/shm";
    return CreateShmCommunicator(store, rank, world_size, s);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown communicator backend '", options.backend, "' (gloo or shm)"));
}

}  // namespace tpserve
