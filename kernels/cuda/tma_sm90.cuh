// Hopper (sm_90) tensor memory access and mbarriers, as inline PTX (PTX ISA
// "Tensor Copy" cp.async.bulk.tensor, "Parallel Synchronization and
// Communication Instructions: mbarrier"):
//
//   __shared__ uint64_t full;                          // in dynamic shared memory
//   if (threadIdx.x == 0) { MbarrierInit(&full, 1); FenceMbarrierInit(); }
//   __syncthreads();
//   if (threadIdx.x == 0) {                            // one thread issues the copy
//     MbarrierArriveExpectTx(&full, kTileBytes);
//     TmaLoadTile2d(tile, &map, col0, row0, &full);    // map: a __grid_constant__ parameter
//   }
//   MbarrierWait(&full, 0);                            // phase 0 done: the tile is there
//
// An mbarrier counts arrivals (mbarrier.init's count) and transaction bytes
// (expect_tx adds, a landing copy subtracts); its phase completes when both
// reach zero, then it starts the next phase. MbarrierWait(bar, p) returns
// once the phase of parity p has completed, i.e. the barrier's current
// phase has the other parity (so waiting with parity 1 on a fresh barrier
// returns at once).
//
// TensorMap is CUtensorMap's 128 bytes; EncodeTensorMapBf16 (tma.h) fills
// it. TPS_TMA_AVAILABLE is 1 where the wrappers exist: the sm_90a device
// pass and the CPU emulator (kernels/cuda/emu/tma_sm90_emu.h).
#ifndef TPSERVE_KERNELS_CUDA_TMA_SM90_CUH_
#define TPSERVE_KERNELS_CUDA_TMA_SM90_CUH_

#include <cstdint>

#include "kernels/cuda/mma_sm80.cuh"
#include "kernels/cuda/tma.h"

#if defined(TPSERVE_CUDA_EMU)
#include "kernels/cuda/emu/tma_sm90_emu.h"
#define TPS_TMA_AVAILABLE 1
#elif defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TPS_TMA_AVAILABLE 1

namespace tpserve::kernels::cuda {

__device__ __forceinline__ void MbarrierInit(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(SharedAddress(bar)), "r"(count)
               : "memory");
}

// Makes initialised mbarriers visible to the async proxy (the TMA unit)
// before any copy completes on them.
__device__ __forceinline__ void FenceMbarrierInit() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// Expects `bytes` more transaction bytes in the current phase, then arrives.
__device__ __forceinline__ void MbarrierArriveExpectTx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(SharedAddress(bar)),
               "r"(bytes)
               : "memory");
}

// Expects `bytes` more transaction bytes in the current phase (no arrival).
__device__ __forceinline__ void MbarrierExpectTx(uint64_t* bar, uint32_t bytes) {
  asm volatile(
      "mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(SharedAddress(bar)),
      "r"(bytes)
      : "memory");
}

__device__ __forceinline__ void MbarrierArrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(SharedAddress(bar)) : "memory");
}

// Returns once the phase of parity `parity` of `bar` has completed.
__device__ __forceinline__ void MbarrierWait(uint64_t* bar, uint32_t parity) {
  const uint32_t addr = SharedAddress(bar);
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n"
        "}\n"
        : "=r"(done)
        : "r"(addr), "r"(parity)
        : "memory");
  } while (done == 0);
}

// The box of `map` whose first element is (column c0, row c1) into `dst`
// (shared memory, 1024-byte aligned for the 128-byte swizzle), completing
// its bytes on `bar`. Elements outside the tensor are zeros (and count).
__device__ __forceinline__ void TmaLoadTile2d(void* dst, const TensorMap* map, int c0, int c1,
                                              uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, "
      "{%2, %3}], [%4];\n" ::"r"(SharedAddress(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(SharedAddress(bar))
      : "memory");
}

// Hands registers back to (Dec) or takes them from (Inc) the SM's pool for
// this warpgroup: producer warps need few, consumer warps many.
template <int kRegs>
__device__ __forceinline__ void SetMaxRegistersDec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void SetMaxRegistersInc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

}  // namespace tpserve::kernels::cuda

#else
#define TPS_TMA_AVAILABLE 0
#endif

#endif  // TPSERVE_KERNELS_CUDA_TMA_SM90_CUH_
