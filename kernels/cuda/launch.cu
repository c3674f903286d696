// ProgrammaticLaunchSupported (launch.cuh).
#include <cuda_runtime.h>

#include <atomic>

#include "kernels/cuda/launch.cuh"

namespace tpserve::kernels::cuda {

bool ProgrammaticLaunchSupported() {
#if defined(TPSERVE_CUDA_EMU)
  return true;
#else
  // Per device: 0 not asked yet, 1 yes, -1 no.
  static std::atomic<int> known[64];
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) {
    cudaGetLastError();
    return false;
  }
  int k = known[device].load(std::memory_order_relaxed);
  if (k == 0) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
      cudaGetLastError();
      major = 0;
    }
    k = major >= 9 ? 1 : -1;
    known[device].store(k, std::memory_order_relaxed);
  }
  return k > 0;
#endif
}

}  // namespace tpserve::kernels::cuda
