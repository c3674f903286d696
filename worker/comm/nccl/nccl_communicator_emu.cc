// CreateNcclCommunicator in CUDA-emulator builds (bazel/cuda.bzl `_emu`
// twins, docs/cuda_emulator.md). Emulated device memory is host memory and
// emulated streams run work when it is enqueued, so a host communicator
// computes exactly what NCCL would on the same buffers: this one runs Gloo
// over the same rendezvous store and reports itself as "nccl", the backend
// the CUDA engine requires for multi-rank groups. It exists so the
// multi-rank CUDA paths (device all-reduces, vocab-parallel gathers) run in
// CI; it says nothing about NCCL itself (nccl_communicator_test covers that
// on GPUs).
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/comm/gloo/gloo_communicator.h"
#include "worker/comm/nccl/nccl_communicator.h"

namespace tpserve {
namespace {

class EmulatedNcclCommunicator final : public Communicator {
 public:
  explicit EmulatedNcclCommunicator(std::unique_ptr<Communicator> host)
      : host_(std::move(host)) {}

  int rank() const override { return host_->rank(); }
  int world_size() const override { return host_->world_size(); }
  std::string backend() const override { return "nccl"; }
  absl::Status AllReduceSum(void* buf, size_t count, CommDType dtype,
                            const CollectiveOptions& opts) override {
    return host_->AllReduceSum(buf, count, dtype, opts);
  }
  absl::Status AllGather(const void* send, void* recv, size_t count, CommDType dtype,
                         const CollectiveOptions& opts) override {
    return host_->AllGather(send, recv, count, dtype, opts);
  }
  absl::Status Broadcast(void* buf, size_t count, CommDType dtype, int root,
                         const CollectiveOptions& opts) override {
    return host_->Broadcast(buf, count, dtype, root, opts);
  }
  absl::Status Barrier(const CollectiveOptions& opts) override { return host_->Barrier(opts); }
  absl::Status Synchronize(void*) override { return absl::OkStatus(); }
  void Abort() override { host_->Abort(); }

 private:
  std::unique_ptr<Communicator> host_;
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
  return std::unique_ptr<Communicator>(new EmulatedNcclCommunicator(std::move(host)));
}

}  // namespace tpserve
