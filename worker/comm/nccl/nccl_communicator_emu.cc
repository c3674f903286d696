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

// What a queued collective touches. Queued work may run after the
// communicator is gone (a collective queued on the engine's stream outlives
// the epoch that queued it when the worker drops the communicator to join a
// new one): it holds this by shared_ptr and finds the host communicator
// aborted, so it ends with an error instead of touching freed memory.
struct EmulatedNcclState {
  explicit EmulatedNcclState(std::unique_ptr<Communicator> h) : host(std::move(h)) {}
  void Record(absl::Status s) {
    absl::MutexLock lock(&mu);
    if (error.ok()) error = std::move(s);
  }
  absl::Status Error() {
    absl::MutexLock lock(&mu);
    return error;
  }

  const std::unique_ptr<Communicator> host;
  absl::Mutex mu;
  absl::Status error ABSL_GUARDED_BY(mu);
};

class EmulatedNcclCommunicator final : public Communicator {
 public:
  EmulatedNcclCommunicator(std::unique_ptr<Communicator> host, int device, absl::Duration timeout)
      : state_(std::make_shared<EmulatedNcclState>(std::move(host))), timeout_(timeout) {
    cudaSetDevice(device);  // the stream belongs to the rank's device
    cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
  }
  ~EmulatedNcclCommunicator() override {
    // Collectives still queued on other streams end on their own once the
    // host communicator is aborted; the own stream is drained here.
    state_->host->Abort();
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return state_->host->rank(); }
  int world_size() const override { return state_->host->world_size(); }
  std::string backend() const override { return "nccl"; }
  absl::Status AllReduceSum(void* buf, size_t count, CommDType dtype,
                            const CollectiveOptions& opts) override {
    return Enqueue(opts, [buf, count, dtype, opts](Communicator& host) {
      return host.AllReduceSum(buf, count, dtype, opts);
    });
  }
  absl::Status AllGather(const void* send, void* recv, size_t count, CommDType dtype,
                         const CollectiveOptions& opts) override {
    return Enqueue(opts, [send, recv, count, dtype, opts](Communicator& host) {
      return host.AllGather(send, recv, count, dtype, opts);
    });
  }
  absl::Status Broadcast(void* buf, size_t count, CommDType dtype, int root,
                         const CollectiveOptions& opts) override {
    return Enqueue(opts, [buf, count, dtype, root, opts](Communicator& host) {
      return host.Broadcast(buf, count, dtype, root, opts);
    });
  }
  absl::Status Barrier(const CollectiveOptions& opts) override {
    TPS_RETURN_IF_ERROR(Synchronize(opts.stream));
    return state_->host->Barrier(opts);
  }
  // Polls the stream against the timeout, as the NCCL communicator does.
  absl::Status Synchronize(void* stream) override {
    cudaStream_t s = stream == nullptr ? stream_ : static_cast<cudaStream_t>(stream);
    const absl::Time deadline = absl::Now() + timeout_;
    for (int i = 0; cudaStreamQuery(s) == cudaErrorNotReady; ++i) {
      if (absl::Now() > deadline) {
        state_->Record(absl::DeadlineExceededError(
            "emulated NCCL collective did not complete within its timeout (a peer is dead or "
            "stalled); aborted the communicator"));
        state_->host->Abort();
        break;
      }
      // Short sleeps first (a collective of a live group ends in microseconds
      // to milliseconds), then 1 ms: many emulated ranks share few cores.
      absl::SleepFor(absl::Microseconds(i < 20 ? 50 : 1000));
    }
    return state_->Error();
  }
  void Abort() override { state_->host->Abort(); }

 private:
  // One collective in flight on a helper thread.
  struct Running {
    std::thread thread;
    std::atomic<bool> done{false};
    absl::Status status;
  };

  absl::Status Enqueue(const CollectiveOptions& opts,
                       std::function<absl::Status(Communicator&)> call) {
    TPS_RETURN_IF_ERROR(state_->Error());
    cudaStream_t s = opts.stream == nullptr ? stream_ : static_cast<cudaStream_t>(opts.stream);
    // One helper thread per run: a graph that captured this collective runs
    // it again at each launch (emu.h, StreamWorkMaker).
    const int e = ::tpserve_emu::EnqueueHostWork(s, [state = state_, call = std::move(call)] {
      auto run = std::make_shared<Running>();
      return ::tpserve_emu::StreamWork([state, run, call] {
        if (!run->thread.joinable()) {
          run->thread = std::thread([state, run, call] {
            run->status = call(*state->host);
            run->done = true;
          });
        }
        if (!run->done) return false;
        run->thread.join();
        if (!run->status.ok()) state->Record(run->status);
        return true;
      });
    });
    if (e != cudaSuccess) {
      return absl::FailedPreconditionError(
          absl::StrCat("emulated NCCL collective cannot be queued: ",
                       cudaGetErrorString(static_cast<cudaError_t>(e))));
    }
    return absl::OkStatus();
  }

  const std::shared_ptr<EmulatedNcclState> state_;
  const absl::Duration timeout_;
  cudaStream_t stream_ = nullptr;
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
