// NCCL implementation of Communicator for GPU ranks (one CUDA device per
// rank, any number of processes or hosts).
//
// Rendezvous: rank 0 creates the NCCL unique id and publishes it, with the
// world size, in the caller's KvStore (the router's TcpKvStoreServer) under
// `<prefix>/unique_id`; the other ranks read it, and a rank started with a
// different world size fails with INVALID_ARGUMENT. The communicator is
// created non-blocking, so every NCCL call returns at once and this class
// polls ncclCommGetAsyncError against a deadline: an init or collective that a
// dead or stalled peer never completes ends in ncclCommAbort and
// DEADLINE_EXCEEDED, never a hang. The first error breaks the communicator
// (later calls return FAILED_PRECONDITION naming it); Abort() makes them
// CANCELLED.
//
// Collectives are enqueued on CollectiveOptions::stream (a cudaStream_t; null
// = the communicator's own stream) and return once enqueued; Synchronize(stream)
// waits for them, bounded by the latest collective's timeout.
//
//   TcpKvStoreClient store(router_host, router_port);
//   NcclOptions opts;
//   opts.device = local_rank;
//   TPS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm,
//                        CreateNcclCommunicator(store, rank, world_size, opts));
//   TPS_RETURN_IF_ERROR(comm->AllReduceSum(d_hidden, n, CommDType::kF32, {.stream = s}));
//   TPS_RETURN_IF_ERROR(comm->Synchronize(s));
#ifndef TPSERVE_WORKER_COMM_NCCL_NCCL_COMMUNICATOR_H_
#define TPSERVE_WORKER_COMM_NCCL_NCCL_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rendezvous/kv_store.h"
#include "worker/comm/communicator.h"

namespace tpserve {

struct NcclOptions {
  // CUDA device this rank uses (usually the local rank).
  int device = 0;
  // Default end-to-end timeout of every collective (and of communicator init).
  absl::Duration timeout = absl::Seconds(30);
  // How long non-zero ranks wait for rank 0's unique id.
  absl::Duration rendezvous_timeout = absl::Seconds(60);
  // Key prefix in the store; distinct groups (or restarts) use distinct ones.
  std::string prefix = "tpserve/nccl";
  // Address peers reach this rank at. NCCL finds its own interfaces
  // (NCCL_SOCKET_IFNAME); the CUDA emulator's Gloo stand-in listens here.
  std::string hostname = "127.0.0.1";
};

// Creates rank `rank` of `world_size`. FAILED_PRECONDITION without a CUDA
// device; DEADLINE_EXCEEDED when peers do not join within the timeouts.
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(KvStore& store, int rank,
                                                                     int world_size,
                                                                     const NcclOptions& options);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_COMM_NCCL_NCCL_COMMUNICATOR_H_
