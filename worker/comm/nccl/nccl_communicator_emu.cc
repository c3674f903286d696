// CreateNcclCommunicator in CUDA-emulator builds (bazel/cuda.bzl `_emu`
// twins, docs/cuda_emulator.md): the emulator has one device and no NCCL, so
// a multi-rank CUDA group cannot be formed. Callers get the error instead of
// a link failure; single-rank CUDA engines never ask for NCCL.
#include "absl/status/status.h"
#include "worker/comm/nccl/nccl_communicator.h"

namespace tpserve {

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(KvStore&, int, int,
                                                                     const NcclOptions&) {
  return absl::FailedPreconditionError(
      "NCCL is not available in CUDA-emulator builds (one emulated device); run multi-rank "
      "--backend=cuda on GPUs");
}

}  // namespace tpserve
