// Inline-PTX wrappers for Hopper's warpgroup tensor-core MMA (sm_90a):
// wgmma.mma_async m64n128k16 with bf16 operands read from shared memory
// through matrix descriptors and f32 accumulators in registers, its fences,
// commit and wait. PTX ISA "Asynchronous Warpgroup Level Matrix
// Multiply-Accumulate". All 128 threads of a warpgroup (4 consecutive warps
// from a multiple of 4) execute each call with the same descriptors.
//
//   WgmmaFence();                                     // before the first wgmma of a batch
//   WgmmaBf16N128(d, WgmmaDescriptorSw128(a_addr), WgmmaDescriptorSw128(b_addr));
//   WgmmaCommit();  WgmmaWait<1>();                    // at most 1 group still in flight
//
// Accumulator fragment (m64nNk16 .f32): warp w of the warpgroup holds rows
// 16w + lane / 4 and + 8; d[4j + e] is row 16w + lane / 4 + 8 (e / 2), column
// 8j + 2 (lane % 4) + e % 2.
//
// TPS_WGMMA_AVAILABLE is 1 where the wrappers exist: the sm_90a device pass
// and the CPU emulator (kernels/cuda/emu/wgmma_sm90_emu.h); kernels compile
// their body under it and are launched only on sm_90 devices.
#ifndef TPSERVE_KERNELS_CUDA_WGMMA_SM90_CUH_
#define TPSERVE_KERNELS_CUDA_WGMMA_SM90_CUH_

#include <cstdint>

#include "kernels/cuda/mma_sm80.cuh"

namespace tpserve::kernels::cuda {

// K-major operand in the 128-byte swizzle (PTX ISA "Matrix Descriptor
// Format"): 8-row atoms of 8 x 128 bytes, 1024-byte aligned, one after
// another (stride 1024 bytes); 16-byte chunk c of row r stored at chunk
// c ^ (r % 8). `smem_addr` is the shared-window address of row 0's 16 k
// values: the atom start plus 32 bytes per k16 step. The leading byte offset
// is unused in this mode (1 by convention).
__device__ __forceinline__ uint64_t WgmmaDescriptorSw128(uint32_t smem_addr) {
  uint64_t desc = 0;
  desc |= static_cast<uint64_t>((smem_addr & 0x3FFFF) >> 4);
  desc |= static_cast<uint64_t>(1) << 16;
  desc |= static_cast<uint64_t>(1024 >> 4) << 32;
  desc |= static_cast<uint64_t>(1) << 62;
  return desc;
}

}  // namespace tpserve::kernels::cuda

#if defined(TPSERVE_CUDA_EMU)
#include "kernels/cuda/emu/wgmma_sm90_emu.h"
#define TPS_WGMMA_AVAILABLE 1
#elif defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TPS_WGMMA_AVAILABLE 1

namespace tpserve::kernels::cuda {

// Orders this thread's earlier register and shared-memory accesses before
// the wgmma ops that follow.
__device__ __forceinline__ void WgmmaFence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

// Orders generic-proxy writes to shared memory (st.shared, cp.async) before
// async-proxy reads (wgmma) of it.
__device__ __forceinline__ void FenceProxyAsyncShared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// d (64 x 128 f32, the fragment above) += A (64 x 16) . B (128 x 16)^T, both
// K-major bf16 in shared memory.
__device__ __forceinline__ void WgmmaBf16N128(float (&d)[64], uint64_t a_desc, uint64_t b_desc) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
      "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "
      "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "
      "%56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, 1, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
        "+f"(d[63])
      : "l"(a_desc), "l"(b_desc));
}

__device__ __forceinline__ void WgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

// Waits until at most `kPending` committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void WgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

}  // namespace tpserve::kernels::cuda

#else
#define TPS_WGMMA_AVAILABLE 0
#endif

#endif  // TPSERVE_KERNELS_CUDA_WGMMA_SM90_CUH_
