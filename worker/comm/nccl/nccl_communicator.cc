// NcclCommunicator: see nccl_communicator.h. Every NCCL call runs on a
// non-blocking communicator and is followed by a bounded poll of
// ncclCommGetAsyncError, so no call here can wait forever on a peer.
#include "worker/comm/nccl/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/status.h"

namespace tpserve {
namespace {

absl::Status CudaError(cudaError_t err, absl::string_view what) {
  if (err == cudaSuccess) return absl::OkStatus();
  cudaGetLastError();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(err)));
}

absl::Status NcclError(ncclResult_t r, absl::string_view what) {
  const std::string msg = absl::StrCat(what, ": ", ncclGetErrorString(r));
  switch (r) {
    case ncclSuccess:
    case ncclInProgress:
      return absl::OkStatus();
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return absl::InvalidArgumentError(msg);
    case ncclRemoteError:
    case ncclSystemError:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

ncclDataType_t ToNccl(CommDType dtype) {
  switch (dtype) {
    case CommDType::kF32:
      return ncclFloat32;
    case CommDType::kBF16:
      return ncclBfloat16;
    case CommDType::kF16:
      return ncclFloat16;
    case CommDType::kI32:
      return ncclInt32;
    case CommDType::kI64:
      return ncclInt64;
    case CommDType::kU8:
      return ncclUint8;
  }
  return ncclFloat32;
}

// Short waits first (collectives of a decode step take microseconds), then
// back off so a long wait does not burn a core.
void PollPause(int iteration) {
  if (iteration < 1000) {
    std::this_thread::yield();
  } else {
    absl::SleepFor(absl::Microseconds(50));
  }
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(int rank, int world_size, int device, absl::Duration timeout)
      : rank_(rank), world_size_(world_size), device_(device), timeout_(timeout) {}

  ~NcclCommunicator() override {
    absl::MutexLock lock(&mu_);
    cudaSetDevice(device_);
    if (comm_ != nullptr) {
      if (error_.ok()) {
        // Drain, then free; a finalize that cannot finish turns into an abort.
        ncclResult_t r = ncclCommFinalize(comm_);
        const absl::Time deadline = absl::Now() + timeout_;
        for (int i = 0; r == ncclInProgress && absl::Now() < deadline; ++i) {
          if (ncclCommGetAsyncError(comm_, &r) != ncclSuccess) break;
          PollPause(i);
        }
        if (r == ncclSuccess) {
          ncclCommDestroy(comm_);
        } else {
          ncclCommAbort(comm_);
        }
      } else {
        ncclCommAbort(comm_);
      }
      comm_ = nullptr;
    }
    if (scratch_ != nullptr) cudaFree(scratch_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  // Creates the stream, the barrier scratch and the NCCL communicator, then
  // waits for every rank without holding the lock (Abort() may end the wait).
  absl::Status Init(const ncclUniqueId& id) {
    {
      absl::MutexLock lock(&mu_);
      TPS_RETURN_IF_ERROR(CudaError(cudaSetDevice(device_), "cudaSetDevice"));
      TPS_RETURN_IF_ERROR(CudaError(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                                    "cudaStreamCreate"));
      TPS_RETURN_IF_ERROR(CudaError(cudaMalloc(&scratch_, sizeof(int32_t)), "cudaMalloc"));
      TPS_RETURN_IF_ERROR(CudaError(cudaMemset(scratch_, 0, sizeof(int32_t)), "cudaMemset"));
      TPS_RETURN_IF_ERROR(CudaError(cudaDeviceSynchronize(), "cudaDeviceSynchronize"));
      ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
      config.blocking = 0;
      ncclComm_t comm = nullptr;
      const ncclResult_t r = ncclCommInitRankConfig(&comm, world_size_, id, rank_, &config);
      if (r != ncclSuccess && r != ncclInProgress) return NcclError(r, "ncclCommInitRankConfig");
      comm_ = comm;
    }
    return WaitReady(absl::Now() + timeout_, "ncclCommInitRankConfig (waiting for every rank)");
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend() const override { return "nccl"; }

  absl::Status AllReduceSum(void* buf, size_t count, CommDType dtype,
                            const CollectiveOptions& opts) override {
    return Enqueue("ncclAllReduce", opts, [&](cudaStream_t s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return ncclAllReduce(buf, buf, count, ToNccl(dtype), ncclSum, comm_, s);
    });
  }

  absl::Status AllGather(const void* send, void* recv, size_t count, CommDType dtype,
                         const CollectiveOptions& opts) override {
    return Enqueue("ncclAllGather", opts, [&](cudaStream_t s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return ncclAllGather(send, recv, count, ToNccl(dtype), comm_, s);
    });
  }

  absl::Status Broadcast(void* buf, size_t count, CommDType dtype, int root,
                         const CollectiveOptions& opts) override {
    if (root < 0 || root >= world_size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("Broadcast: root ", root, " outside [0, ", world_size_, ")"));
    }
    return Enqueue("ncclBroadcast", opts, [&](cudaStream_t s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return ncclBroadcast(buf, buf, count, ToNccl(dtype), root, comm_, s);
    });
  }

  absl::Status Barrier(const CollectiveOptions& opts) override {
    CollectiveOptions own = opts;
    own.stream = stream_;
    TPS_RETURN_IF_ERROR(Enqueue(
        "ncclAllReduce (barrier)", own, [&](cudaStream_t s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return ncclAllReduce(scratch_, scratch_, 1, ncclInt32, ncclSum, comm_, s);
        }));
    return Synchronize(stream_);
  }

  // Polls the stream and the communicator's async error, releasing the lock
  // between polls so Abort() from another thread is never blocked.
  absl::Status Synchronize(void* stream) override {
    cudaStream_t s = stream == nullptr ? stream_ : static_cast<cudaStream_t>(stream);
    absl::Time deadline;
    {
      absl::MutexLock lock(&mu_);
      deadline =
          pending_deadline_ == absl::InfinitePast() ? absl::Now() + timeout_ : pending_deadline_;
    }
    for (int i = 0;; ++i) {
      {
        absl::MutexLock lock(&mu_);
        TPS_RETURN_IF_ERROR(CheckUsable());
        cudaSetDevice(device_);
        ncclResult_t async = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(comm_, &async);
        if (r == ncclSuccess && async != ncclSuccess && async != ncclInProgress) r = async;
        if (r != ncclSuccess && r != ncclInProgress) return Fail(NcclError(r, "NCCL collective"));
        const cudaError_t q = cudaStreamQuery(s);
        if (q == cudaSuccess) {
          pending_deadline_ = absl::InfinitePast();
          return absl::OkStatus();
        }
        if (q != cudaErrorNotReady) return Fail(CudaError(q, "cudaStreamQuery"));
        if (absl::Now() > deadline) {
          return Fail(absl::DeadlineExceededError(
              absl::StrCat("NCCL collective did not complete within its timeout (a peer is dead or "
                           "stalled); rank ",
                           rank_, " aborted the communicator")));
        }
      }
      PollPause(i);
    }
  }

  void Abort() override {
    absl::MutexLock lock(&mu_);
    if (aborted_) return;
    aborted_ = true;
    if (comm_ != nullptr) {
      cudaSetDevice(device_);
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
  }

 private:
  absl::Status CheckUsable() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (aborted_) return absl::CancelledError("NCCL communicator was aborted");
    if (!error_.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("NCCL communicator is broken: ", error_.ToString()));
    }
    return absl::OkStatus();
  }

  // Records the first error and aborts the communicator so peers stop waiting on us.
  absl::Status Fail(absl::Status s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (error_.ok()) error_ = s;
    if (comm_ != nullptr) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    return s;
  }

  // Waits until the last call on the non-blocking communicator left
  // ncclInProgress, up to `deadline`. The lock is taken per poll only, so
  // Abort() from another thread (a watchdog, a shutdown) ends the wait with
  // CANCELLED instead of waiting for the deadline behind the lock.
  absl::Status WaitReady(absl::Time deadline, absl::string_view what) ABSL_LOCKS_EXCLUDED(mu_) {
    for (int i = 0;; ++i) {
      {
        absl::MutexLock lock(&mu_);
        TPS_RETURN_IF_ERROR(CheckUsable());
        ncclResult_t state = ncclSuccess;
        const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
        if (r != ncclSuccess) return Fail(NcclError(r, what));
        if (state == ncclSuccess) return absl::OkStatus();
        if (state != ncclInProgress) return Fail(NcclError(state, what));
        if (absl::Now() > deadline) {
          return Fail(absl::DeadlineExceededError(absl::StrCat(
              what, " timed out after ", absl::FormatDuration(timeout_), "; aborted")));
        }
      }
      PollPause(i);
    }
  }

  template <typename Call>
  absl::Status Enqueue(absl::string_view what, const CollectiveOptions& opts, Call&& call)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::Time deadline;
    {
      absl::MutexLock lock(&mu_);
      TPS_RETURN_IF_ERROR(CheckUsable());
      TPS_RETURN_IF_ERROR(CudaError(cudaSetDevice(device_), "cudaSetDevice"));
      const absl::Duration timeout = opts.timeout == absl::ZeroDuration() ? timeout_ : opts.timeout;
      deadline = absl::Now() + timeout;
      pending_deadline_ = std::max(pending_deadline_, deadline);
      cudaStream_t s = opts.stream == nullptr ? stream_ : static_cast<cudaStream_t>(opts.stream);
      const ncclResult_t r = call(s);
      if (r != ncclSuccess && r != ncclInProgress) return Fail(NcclError(r, what));
    }
    return WaitReady(deadline, what);
  }

  const int rank_;
  const int world_size_;
  const int device_;
  const absl::Duration timeout_;
  cudaStream_t stream_ = nullptr;  // set once in Init
  int32_t* scratch_ = nullptr;     // set once in Init; barrier all-reduce

  absl::Mutex mu_;
  ncclComm_t comm_ ABSL_GUARDED_BY(mu_) = nullptr;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time pending_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// Rank 0 publishes "<hex unique id>/<world size>"; the others read and check it.
absl::StatusOr<ncclUniqueId> Rendezvous(KvStore& store, int rank, int world_size,
                                        const NcclOptions& options) {
  const std::string key = absl::StrCat(options.prefix, "/unique_id");
  ncclUniqueId id{};
  if (rank == 0) {
    TPS_RETURN_IF_ERROR(NcclError(ncclGetUniqueId(&id), "ncclGetUniqueId"));
    const std::string hex =
        absl::BytesToHexString(absl::string_view(id.internal, sizeof(id.internal)));
    TPS_RETURN_IF_ERROR(store.Set(key, absl::StrCat(hex, "/", world_size)));
    return id;
  }
  absl::StatusOr<std::string> value = store.Get(key, options.rendezvous_timeout);
  if (!value.ok())
    return Annotate(value.status(), absl::StrCat("waiting for rank 0's NCCL id at ", key));
  const std::vector<std::string> parts = absl::StrSplit(*value, '/');
  int published_world = 0;
  if (parts.size() != 2 || parts[0].size() != 2 * sizeof(id.internal) ||
      !absl::SimpleAtoi(parts[1], &published_world)) {
    return absl::InvalidArgumentError(absl::StrCat("malformed NCCL rendezvous value at ", key));
  }
  if (published_world != world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "world size mismatch: rank 0 has ", published_world, ", rank ", rank, " has ", world_size));
  }
  const std::string bytes = absl::HexStringToBytes(parts[0]);
  std::copy(bytes.begin(), bytes.end(), id.internal);
  return id;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(KvStore& store, int rank,
                                                                     int world_size,
                                                                     const NcclOptions& options) {
  if (world_size <= 0 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad rank ", rank, " of world size ", world_size));
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();
    return absl::FailedPreconditionError("NCCL communicator needs a CUDA device; none found");
  }
  if (options.device < 0 || options.device >= devices) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", options.device, " does not exist (", devices, " found)"));
  }
  TPS_ASSIGN_OR_RETURN(const ncclUniqueId id, Rendezvous(store, rank, world_size, options));
  auto comm = std::make_unique<NcclCommunicator>(rank, world_size, options.device, options.timeout);
  TPS_RETURN_IF_ERROR(comm->Init(id));
  return std::unique_ptr<Communicator>(std::move(comm));
}

}  // namespace tpserve
