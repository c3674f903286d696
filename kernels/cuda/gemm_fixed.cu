// cuda::Gemm with GemmParams::y_fixed (partition-invariant output, ops.h):
// one warp per weight row (weights in weight_layout.h's device layout),
// lanes striding over the row's chunks (a quantized block of 32, or
// fixed_chunk plain values). Each chunk's partial is an f32 dot product in
// column order (the weights dequantised in registers, f32 activations as in
// the skinny GEMM), then round(partial * 2^32) as int64; lanes sum their
// integers and the warp adds the 32 lane sums with integer shuffles, so no
// step depends on which lane took which chunk. Any m: in invariant mode
// prefill runs here too (passes of 8 activation rows), not on the tensor
// cores.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/quant.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kRows = 8;  // activation rows per pass

// As ToFixedPoint in kernels/cpu/gemm_kernels.h: clamp to +-2^51 (NaN to
// -2^51), round half to even.
__device__ __forceinline__ long long ToFixedPoint(float partial) {
  constexpr double kLimit = 2251799813685248.0;  // 2^51
  double s = static_cast<double>(partial) * static_cast<double>(1ll << kFixedPointShift);
  s = s > -kLimit ? s : -kLimit;
  s = s < kLimit ? s : kLimit;
  return __double2ll_rn(s);
}

// Integer warp sum (exact; wraps mod 2^64 like the all-reduce), as two
// 32-bit shuffles per step.
__device__ __forceinline__ long long WarpSumI64(long long v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned long long u = static_cast<unsigned long long>(v);
    const unsigned lo = __shfl_xor_sync(0xffffffffu, static_cast<unsigned>(u), o);
    const unsigned hi = __shfl_xor_sync(0xffffffffu, static_cast<unsigned>(u >> 32), o);
    v = static_cast<long long>(u + ((static_cast<unsigned long long>(hi) << 32) | lo));
  }
  return v;
}

template <DType kW>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    FixedGemmKernel(const float* __restrict__ x, const void* __restrict__ w,
                    long long* __restrict__ y, int m, int n, int k, int chunk, int64_t x_stride,
                    int64_t y_stride) {
  const int lane = threadIdx.x & 31;
  const int col = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  const int row0 = blockIdx.y * kRows;
  if (col >= n) return;
  const int rows_here = min(kRows, m - row0);
  long long acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0;
  if constexpr (IsQuantized(kW)) {
    const PackedQuantRows pw = PackedRows<kW>(w, n, k);
    for (int b = lane; b < k / 32; b += 32) {
      float v[32];
      LoadPackedBlock32<kW>(pw, col, b, v);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < rows_here) {
          const float* xs = x + (row0 + r) * x_stride + b * 32;
          float s = 0.0f;
#pragma unroll
          for (int i = 0; i < 32; ++i) s = fmaf(v[i], __ldg(xs + i), s);
          acc[r] += ToFixedPoint(s);
        }
      }
    }
  } else {
    for (int c = lane; c < k / chunk; c += 32) {
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < rows_here) {
          const float* xs = x + (row0 + r) * x_stride;
          float s = 0.0f;
          for (int i = c * chunk; i < (c + 1) * chunk; ++i) {
            s = fmaf(LoadElement<kW>(RowPointer(w, kW, k, col), i), __ldg(xs + i), s);
          }
          acc[r] += ToFixedPoint(s);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const long long total = WarpSumI64(acc[r]);
    if (lane == 0 && r < rows_here) y[(row0 + r) * y_stride + col] = total;
  }
}

template <DType kW>
absl::Status LaunchFixed(const GemmParams& p, int64_t x_stride, int64_t y_stride,
                         cudaStream_t stream) {
  const dim3 grid((p.n + kWarpsPerBlock - 1) / kWarpsPerBlock, (p.m + kRows - 1) / kRows);
  FixedGemmKernel<kW>
      <<<grid, kWarpsPerBlock * 32, 0, stream>>>(p.x, p.w, reinterpret_cast<long long*>(p.y_fixed),
                                                 p.m, p.n, p.k, p.fixed_chunk, x_stride, y_stride);
  return LaunchStatus("FixedGemmKernel");
}

}  // namespace

absl::Status LaunchFixedGemm(const GemmParams& p, int64_t x_stride, int64_t y_stride,
                             cudaStream_t stream) {
  if (p.bias != nullptr) return absl::InvalidArgumentError("Gemm: y_fixed takes no bias");
  if (!IsQuantized(p.w_dtype) && (p.fixed_chunk <= 0 || p.k % p.fixed_chunk != 0)) {
    return absl::InvalidArgumentError("Gemm: fixed_chunk must divide k");
  }
  if (p.m > 65535 * kRows) return absl::InvalidArgumentError("Gemm: y_fixed m too large");
  TPS_WEIGHT_DTYPE_SWITCH(p.w_dtype, kW,
                          { return LaunchFixed<kW>(p, x_stride, y_stride, stream); });
}

}  // namespace tpserve::kernels::cuda
