// CreateNcclCommunicator in CUDA-emulator builds (bazel/cuda.bzl `_emu`
// twins, docs/cuda_emulator.md). Emulated device memory is host memory, so a
// host communicator computes exactly what NCCL would on the same buffers:
// this one runs Gloo over the same rendezvous store and reports itself as
// "nccl", the backend the CUDA engine requires for multi-rank groups. Like
// NCCL, a collective is queued on its stream (CollectiveOptions::stream, null
// = the communicator's own non-blocking stream) and runs in stream order when
// that stream runs (kernels/cuda/emu/streams.h): it reads its buffers then,
// not when it was called, so a buffer filled on an unordered stream shows up
// as wrong results. It runs on a helper thread and reports not-ready until
// Gloo returns, so cudaStreamQuery-style polling behaves as with NCCL;
// errors surface at Synchronize, bounded by the timeout. It exists so the
// multi-rank CUDA paths (device all-reduces, vocab-parallel gathers) run in
// CI; it says nothing about NCCL itself (nccl_communicator_test covers that
// on GPUs).
#include <cuda_runtime.h>

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/status.h"
#include "worker/comm/gloo/gloo_communicator.h"
#include "worker/comm/nccl/nccl_communicator.h"

namespace tpserve {
namespace {

class EmulatedNcclCommunicator final : public Communicator {
 public:
  EmulatedNcclCommunicator(std::unique_ptr<Communicator> host, int device, absl::Duration timeout)
      : host_(std::move(host)), timeout_(timeout) {
    cudaSetDevice(device);  // the stream belongs to the rank's device
    cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
  }
  ~EmulatedNcclCommunicator() override {
    // Queued collectives reference host_: end them (abort if a peer is gone).
    if (!Synchronize(stream_).ok()) host_->Abort();
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return host_->rank(); }
  int world_size() const override { return host_->world_size(); }
  std::string backend() const override { return "nccl"; }
  absl::Status AllReduceSum(void* buf, size_t count, CommDType dtype,
                            const CollectiveOptions& opts) override {
    return Enqueue(opts, [this, buf, count, dtype, opts] {
      return host_->AllReduceSum(buf, count, dtype, opts);
    });
  }
  absl::Status AllGather(const void* send, void* recv, size_t count, CommDType dtype,
                         const CollectiveOptions& opts) override {
    return Enqueue(opts, [this, send, recv, count, dtype, opts] {
      return host_->AllGather(send, recv, count, dtype, opts);
    });
  }
  absl::Status Broadcast(void* buf, size_t count, CommDType dtype, int root,
                         const CollectiveOptions& opts) override {
    return Enqueue(opts, [this, buf, count, dtype, root, opts] {
      return host_->Broadcast(buf, count, dtype, root, opts);
    });
  }
  absl::Status Barrier(const CollectiveOptions& opts) override {
    TPS_RETURN_IF_ERROR(Synchronize(opts.stream));
    return host_->Barrier(opts);
  }
  // Polls the stream against the timeout, as the NCCL communicator does.
  absl::Status Synchronize(void* stream) override {
    cudaStream_t s = stream == nullptr ? stream_ : static_cast<cudaStream_t>(stream);
    const absl::Time deadline = absl::Now() + timeout_;
    while (cudaStreamQuery(s) == cudaErrorNotReady) {
      if (absl::Now() > deadline) {
        Record(absl::DeadlineExceededError(
            "emulated NCCL collective did not complete within its timeout (a peer is dead or "
            "stalled); aborted the communicator"));
        host_->Abort();
        break;
      }
      absl::SleepFor(absl::Microseconds(50));
    }
    absl::MutexLock lock(&mu_);
    return error_;
  }
  void Abort() override { host_->Abort(); }

 private:
  // One collective in flight on a helper thread.
  struct Running {
    std::thread thread;
    std::atomic<bool> done{false};
    absl::Status status;
  };

  void Record(absl::Status s) {
    absl::MutexLock lock(&mu_);
    if (error_.ok()) error_ = std::move(s);
  }

  absl::Status Enqueue(const CollectiveOptions& opts, std::function<absl::Status()> call) {
    {
      absl::MutexLock lock(&mu_);
      TPS_RETURN_IF_ERROR(error_);
    }
    cudaStream_t s = opts.stream == nullptr ? stream_ : static_cast<cudaStream_t>(opts.stream);
    auto run = std::make_shared<Running>();
    const int e = ::tpserve_emu::EnqueueHostWork(s, [this, run, call = std::move(call)]() mutable {
      if (!run->thread.joinable()) {
        run->thread = std::thread([run, call] {
          run->status = call();
          run->done = true;
        });
      }
      if (!run->done) return false;
      run->thread.join();
      if (!run->status.ok()) Record(run->status);
      return true;
    });
    if (e != cudaSuccess) {
      return absl::FailedPreconditionError(
          absl::StrCat("emulated NCCL collective cannot be queued: ",
                       cudaGetErrorString(static_cast<cudaError_t>(e))));
    }
    return absl::OkStatus();
  }

  std::unique_ptr<Communicator> host_;
  const absl::Duration timeout_;
  cudaStream_t stream_ = nullptr;
  absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(KvStore& store, int rank,
                                                                     int world_size,
                                                                     const NcclOptions& options) {
  GlooOptions gloo;
  gloo.timeout = options.timeout;
  gloo.rendezvous_timeout = options.rendezvous_timeout;
  gloo.prefix = absl::StrCat(options.prefix, "/emulated");
  gloo.hostname = options.hostname;
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> host,
                       CreateGlooCommunicator(store, rank, world_size, gloo));
  return std::unique_ptr<Communicator>(
      new EmulatedNcclCommunicator(std::move(host), options.device, options.timeout));
}

}  // namespace tpserve
