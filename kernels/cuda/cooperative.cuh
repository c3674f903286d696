// Cooperative launches: every block of the grid is resident at once, so
// its blocks may wait for each other at GridSync() (a grid-wide barrier
// that also makes every block's earlier writes visible to all). The grid
// must not exceed what the device holds at once (CooperativeBlocks), or the
// launch fails with cudaErrorCooperativeLaunchTooLarge. CUDA programming
// guide, "Grid Synchronization". The CUDA emulator runs such a grid's blocks
// concurrently, one OS thread each, and aborts when a block ends while
// others wait at GridSync() (kernels/cuda/emu/grid.h).
//
// Memory the launch writes is read with plain loads, never __ldg
// (ld.global.nc): the read-only path is outside the PTX memory model (PTX
// ISA, "Scope and applicability of the model"), so GridSync() does not make
// it see another block's write. The emulator aborts when a cooperative
// grid changes what one of its __ldg reads returned (emu.h).
//
//   // device
//   ... phase 1 ...
//   GridSync();
//   ... phase 2 reads what any block wrote in phase 1 (plain loads) ...
//   // host
//   const int blocks = CooperativeBlocks(MyKernel, 256, smem);  // 0: cannot
//   LaunchCooperative("MyKernel", MyKernel, blocks, 256, smem, stream, args...);
//   return LaunchStatus("MyKernel");
#ifndef TPSERVE_KERNELS_CUDA_COOPERATIVE_CUH_
#define TPSERVE_KERNELS_CUDA_COOPERATIVE_CUH_

#include <cuda_runtime.h>

#include <utility>

#include "kernels/cuda/launch.cuh"

#if !defined(TPSERVE_CUDA_EMU)
#include <cooperative_groups.h>
#endif

namespace tpserve::kernels::cuda {

// Returns once every thread of the grid has called it; writes before it
// are visible to every thread after it. Only in a cooperative launch.
__device__ __forceinline__ void GridSync() {
#if defined(TPSERVE_CUDA_EMU)
  ::tpserve_emu::GridSync();
#else
  cooperative_groups::this_grid().sync();
#endif
}

// The most blocks of `kernel` (`threads` threads, `shared_bytes` of dynamic
// shared memory) one cooperative launch may have on the current device; 0
// when the device has no cooperative launches or no such block fits.
template <typename... P>
int CooperativeBlocks(void (*kernel)(P...), int threads, size_t shared_bytes) {
  int device = 0, sms = 0, cooperative = 0, per_sm = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, shared_bytes) !=
          cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return cooperative != 0 ? sms * per_sm : 0;
}

// kernel<<<grid, block, shared_bytes, stream>>>(args...) as a cooperative
// launch (also inside stream capture). Errors are left for cudaGetLastError,
// as with <<<>>>. `name` must be a literal: the emulator keeps the pointer.
template <typename... P, typename... A>
void LaunchCooperative(const char* name, void (*kernel)(P...), dim3 grid, dim3 block,
                       size_t shared_bytes, cudaStream_t stream, A&&... args) {
#if defined(TPSERVE_CUDA_EMU)
  ::tpserve_emu::Launcher(name, grid, block, shared_bytes, stream, /*programmatic=*/false,
                          /*cooperative=*/true)(kernel)(std::forward<A>(args)...);
#else
  (void)name;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeCooperative;
  attribute.val.cooperative = 1;
  LaunchWithAttribute(kernel, grid, block, shared_bytes, stream, &attribute,
                      std::forward<A>(args)...);
#endif
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_COOPERATIVE_CUH_
