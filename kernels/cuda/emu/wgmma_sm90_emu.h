// Emulator versions of the kernels/cuda/wgmma_sm90.cuh wrappers (same names
// and contracts), written from the PTX ISA: "Asynchronous Warpgroup Level
// Matrix Multiply-Accumulate" (wgmma.mma_async m64nNk16 .bf16, matrix
// descriptors, the 128-byte swizzle, wgmma.commit_group / wait_group) and
// the accumulator fragment of m64nNk16 .f32: warp w of the warpgroup holds
// rows 16w + lane / 4 (+ 8); d[4j + e] is row (e / 2) * 8 + that, column
// 8j + 2 (lane % 4) + e % 2.
//
// As adversarial as the hardware allows (wgmma.cc):
//   - operands are read from shared memory when the wgmma is issued (the
//     earliest the hardware may), so data that lands later is not seen;
//   - a cp.async into shared memory an in-flight wgmma reads fails, and so
//     does any other change to it found when wgmma.wait_group retires it;
//   - accumulators read as NaN from issue until the wait that retires the
//     last wgmma writing them; a kernel that ends with wgmmas in flight fails;
//   - operands must be visible to the async proxy: a wgmma fails if any
//     byte it reads differs from what the block's shared memory held at its
//     last fence.proxy.async (TMA's writes, async themselves, excepted), so
//     generic stores or cp.async copies not followed by a fence show.
// Descriptors: K-major operands in the 128-byte swizzle only (layout 1, base
// offset 0, 8-row atoms 1024-byte aligned), in dynamic shared memory.
#ifndef TPSERVE_KERNELS_CUDA_EMU_WGMMA_SM90_EMU_H_
#define TPSERVE_KERNELS_CUDA_EMU_WGMMA_SM90_EMU_H_

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/emu/emu.h"

namespace tpserve_emu {
// Offset of p in the block's dynamic shared memory (fails elsewhere).
uint32_t SharedWindowAddress(const void* p);
void WgmmaIssue(float* d, int n, uint64_t a_desc, uint64_t b_desc);
void WgmmaCommit();
void WgmmaWait(int pending);
// Fails if [p, p + bytes) is shared memory an in-flight wgmma reads.
void CheckNoWgmmaReads(const void* p, int bytes, const char* writer);
// fence.proxy.async.shared::cta: the block's shared memory as it is now
// becomes what the async proxy sees; it also fences the calling thread's
// mbarrier inits (tma.cc).
void FenceProxyAsync();
// The async proxy (a TMA copy) wrote [p, p + bytes) of dynamic shared memory.
void AsyncProxyWrote(const void* p, size_t bytes);
}  // namespace tpserve_emu

namespace tpserve::kernels::cuda {

__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return ::tpserve_emu::SharedWindowAddress(p);
}
__device__ __forceinline__ void WgmmaFence() {}
__device__ __forceinline__ void FenceProxyAsyncShared() { ::tpserve_emu::FenceProxyAsync(); }
__device__ __forceinline__ void WgmmaBf16N128(float (&d)[64], uint64_t a_desc, uint64_t b_desc) {
  ::tpserve_emu::WgmmaIssue(d, 128, a_desc, b_desc);
}
__device__ __forceinline__ void WgmmaCommit() { ::tpserve_emu::WgmmaCommit(); }
template <int kPending>
__device__ __forceinline__ void WgmmaWait() {
  ::tpserve_emu::WgmmaWait(kPending);
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_EMU_WGMMA_SM90_EMU_H_
