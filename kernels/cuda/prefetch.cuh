// L2 prefetch for a later kernel (cuda_ops.h L2Prefetch): one block's
// share of the ranges, issued by its thread 0 as bulk prefetches
// (cp.async.bulk.prefetch.L2, sm_90; PTX ISA "cp.async.bulk.prefetch").
// The instruction is a hint with no completion to wait for: it only adds
// bytes in flight from HBM, which a latency-bound GEMV leaves unused. On
// parts before sm_90 it is compiled out. The CUDA emulator checks each piece
// (16-byte aligned, a multiple of 16 bytes, inside one device allocation)
// and otherwise does nothing: it has no caches.
//
//   PrefetchShareL2(f.prefetch, blockIdx.x, gridDim.x);
#ifndef TPSERVE_KERNELS_CUDA_PREFETCH_CUH_
#define TPSERVE_KERNELS_CUDA_PREFETCH_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_ops.h"

namespace tpserve::kernels::cuda {

// [p, p + bytes) into L2: p 16-byte aligned, bytes a multiple of 16.
__device__ __forceinline__ void PrefetchL2(const void* p, uint32_t bytes) {
#if defined(TPSERVE_CUDA_EMU)
  ::tpserve_emu::PrefetchL2(p, bytes);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
  (void)p;
  (void)bytes;
#endif
}

// Block `part` of `parts` prefetches its share of r: the ranges taken as
// one run of 16-byte units, cut into `parts` near-equal slices.
__device__ __forceinline__ void PrefetchShareL2(const L2Prefetch& r, int part, int parts) {
  if (r.ranges == 0 || threadIdx.x != 0) return;
  // Unrolled with constant indices: r stays in the kernel's parameter bank
  // (a loop to r.ranges copied it to a 72-byte stack frame in every fused
  // GEMV on sm_90a). The split is one 32-bit division (L2Prefetch holds
  // under 2^32 16-byte units): a 64-bit one is a called routine, and its
  // calling convention made ptxas spill in the decode GEMMs.
  uint32_t units = 0;
#pragma unroll
  for (int i = 0; i < L2Prefetch::kMaxRanges; ++i) {
    units += i < r.ranges ? static_cast<uint32_t>(static_cast<uint64_t>(r.bytes[i]) >> 4) : 0u;
  }
  const uint32_t pt = static_cast<uint32_t>(part), n = static_cast<uint32_t>(parts);
  const uint32_t q = units / n, rem = units % n;
  const int64_t lo = (static_cast<int64_t>(pt) * q + (pt < rem ? pt : rem)) * 16;
  const int64_t hi = lo + (static_cast<int64_t>(q) + (pt < rem ? 1 : 0)) * 16;
  constexpr int64_t kPiece = int64_t{1} << 30;  // the instruction's size is 32-bit
  int64_t base = 0;
#pragma unroll
  for (int i = 0; i < L2Prefetch::kMaxRanges; ++i) {
    if (i >= r.ranges) break;
    const int64_t a = lo > base ? lo : base;
    const int64_t b = hi < base + r.bytes[i] ? hi : base + r.bytes[i];
    for (int64_t at = a; at < b; at += kPiece) {
      const int64_t len = b - at < kPiece ? b - at : kPiece;
      PrefetchL2(static_cast<const char*>(r.ptr[i]) + (at - base), static_cast<uint32_t>(len));
    }
    base += r.bytes[i];
  }
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_PREFETCH_CUH_
