// Communicator: the collectives tensor-parallel ranks use to combine partial
// results. One abstract interface, implemented by Gloo over TCP for CPU ranks
// on any hosts (worker/comm/gloo/), by shared memory for CPU ranks on one host
// (worker/comm/shm/), and by NCCL for GPU ranks (worker/comm/nccl/);
// SwappableCommunicator puts one behind a handle that survives group epochs.
//
// Buffers live where the implementation's ranks compute: host memory for Gloo,
// device memory for NCCL (host memory for Gloo and shm). `CollectiveOptions::stream` carries the CUDA stream
// (a cudaStream_t cast to void*) for NCCL; Gloo ignores it and completes every
// call before returning. NCCL calls are enqueued on the stream and their errors
// (including the timeout) surface at the latest on `Synchronize(stream)`.
//
// Every collective has a timeout (the communicator's default, or a per-call
// override). A peer that dies or stalls becomes an error on every other rank
// within the timeout, never a hang. After the first error, the communicator is
// broken: every later call returns FAILED_PRECONDITION naming the first error.
//
//   std::unique_ptr<Communicator> comm = ...;  // e.g. CreateGlooCommunicator
//   std::vector<float> partial(n);
//   TPS_RETURN_IF_ERROR(comm->AllReduceSum(partial.data(), n, CommDType::kF32));
#ifndef TPSERVE_WORKER_COMM_COMMUNICATOR_H_
#define TPSERVE_WORKER_COMM_COMMUNICATOR_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace tpserve {

enum class CommDType { kF32, kBF16, kF16, kI32, kI64, kU8 };

// Bytes per element of `dtype`.
size_t CommDTypeSize(CommDType dtype);

struct CollectiveOptions {
  // End-to-end limit for this call; zero means the communicator's default.
  absl::Duration timeout = absl::ZeroDuration();
  // cudaStream_t for device communicators; ignored by host communicators.
  void* stream = nullptr;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // "gloo" or "nccl".
  virtual std::string backend() const = 0;

  // In place: buf[i] = sum over ranks of buf[i]. `count` elements.
  [[nodiscard]] virtual absl::Status AllReduceSum(void* buf, size_t count, CommDType dtype,
                                                  const CollectiveOptions& opts = {}) = 0;

  // recv = concat over ranks r of rank r's `send` (count elements each);
  // recv holds world_size() * count elements. send may alias
  // recv + rank() * count.
  [[nodiscard]] virtual absl::Status AllGather(const void* send, void* recv, size_t count,
                                               CommDType dtype,
                                               const CollectiveOptions& opts = {}) = 0;

  // In place: every rank's buf becomes root's buf.
  [[nodiscard]] virtual absl::Status Broadcast(void* buf, size_t count, CommDType dtype, int root,
                                               const CollectiveOptions& opts = {}) = 0;

  // Returns once every rank has entered the barrier.
  [[nodiscard]] virtual absl::Status Barrier(const CollectiveOptions& opts = {}) = 0;

  // Waits for work enqueued on `stream` (device communicators). Host
  // communicators return OK at once.
  [[nodiscard]] virtual absl::Status Synchronize(void* stream) = 0;

  // Tears the communicator down so peers blocked in a collective with this
  // rank get an error instead of waiting for it; this rank's later calls
  // fail (FAILED_PRECONDITION naming the abort). Callable more than once and
  // from another thread; a collective this rank has in flight then ends with
  // an error (shm: at once; Gloo: at once for small all-reduces, at the
  // latest at its timeout otherwise).
  virtual void Abort() = 0;
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_COMM_COMMUNICATOR_H_
