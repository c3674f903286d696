// CUDA error codes as absl::Status, for launchers and device-memory helpers.
// Header-only; usable from nvcc (.cu) and the host compiler (.cc) alike.
//
//   TPS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, n, kind, stream));
//   my_kernel<<<grid, block, 0, stream>>>(...);
//   return LaunchStatus("rms_norm");
#ifndef TPSERVE_KERNELS_CUDA_CUDA_STATUS_H_
#define TPSERVE_KERNELS_CUDA_CUDA_STATUS_H_

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tpserve::kernels::cuda {

// OK for cudaSuccess; otherwise INTERNAL (or RESOURCE_EXHAUSTED for an
// allocation failure) naming `what` and the CUDA error. Clears the error so a
// recoverable failure does not poison later calls.
inline absl::Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  cudaGetLastError();
  std::string msg =
      absl::StrCat(what, ": ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")");
  if (err == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

// Status of the most recent kernel launch (bad configuration, missing SASS).
inline absl::Status LaunchStatus(const char* kernel) {
  return CudaStatus(cudaGetLastError(), kernel);
}

}  // namespace tpserve::kernels::cuda

#define TPS_CUDA_RETURN_IF_ERROR(expr)                                                     \
  do {                                                                                     \
    ::absl::Status tps_cuda_status_ = ::tpserve::kernels::cuda::CudaStatus((expr), #expr); \
    if (!tps_cuda_status_.ok()) return tps_cuda_status_;                                   \
  } while (false)

#endif  // TPSERVE_KERNELS_CUDA_CUDA_STATUS_H_
