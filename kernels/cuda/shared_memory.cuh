// The block's dynamic shared memory (the launch's third <<<>>> argument) as
// T[], 16-byte aligned. One declaration for every kernel, so the CUDA
// emulator (kernels/cuda/emu) can supply its own.
//
//   float* smem = DynamicSharedMemory<float>();
#ifndef TPSERVE_KERNELS_CUDA_SHARED_MEMORY_CUH_
#define TPSERVE_KERNELS_CUDA_SHARED_MEMORY_CUH_

namespace tpserve::kernels::cuda {

template <typename T>
__device__ __forceinline__ T* DynamicSharedMemory() {
#if defined(TPSERVE_CUDA_EMU)
  return ::tpserve_emu::DynamicShared<T>();
#else
  extern __shared__ __align__(16) unsigned char tps_dynamic_shared[];
  return reinterpret_cast<T*>(tps_dynamic_shared);
#endif
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_SHARED_MEMORY_CUH_
