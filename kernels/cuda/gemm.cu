// cuda::Gemm: m <= kSkinnyGemmMaxRows runs the skinny GEMM below (decode);
// larger m the tensor-core kernel of gemm_tc.cu (prefill).
//
// Skinny GEMM with fused weight dequantisation:
// One warp per weight row (4 rows per 128-thread block); lanes stride over the
// row's 32-value blocks (quantized types) or elements (plain types), so a warp
// reads each weight row once, coalesced, per pass of kRows activation rows.
// Activations are read through L1 (each lane walks 32 consecutive floats).
#include <cuda_runtime.h>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/quant.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;

template <DType kW, int kRows>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    SkinnyGemmKernel(const float* __restrict__ x, const void* __restrict__ w,
                     const float* __restrict__ bias, float* __restrict__ y, int m, int n, int k,
                     int64_t x_stride, int64_t y_stride) {
  const int lane = threadIdx.x & 31;
  const int col = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  const int row0 = blockIdx.y * kRows;
  if (col >= n) return;
  const int rows_here = min(kRows, m - row0);
  const void* wrow = RowPointer(w, kW, k, col);
  const float* xrow0 = x + row0 * x_stride;

  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;

  if constexpr (IsQuantized(kW)) {
    const int blocks = k / 32;
    for (int b = lane; b < blocks; b += 32) {
      float v[32];
      LoadBlock32<kW>(wrow, b, v);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < rows_here) {
          const float* xs = xrow0 + r * x_stride + b * 32;
          float s = 0.0f;
#pragma unroll
          for (int i = 0; i < 32; ++i) s = fmaf(v[i], __ldg(xs + i), s);
          acc[r] += s;
        }
      }
    }
  } else {
    for (int i = lane; i < k; i += 32) {
      const float wv = LoadElement<kW>(wrow, i);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < rows_here) acc[r] = fmaf(wv, __ldg(xrow0 + r * x_stride + i), acc[r]);
      }
    }
  }

  const float b = bias != nullptr ? __ldg(bias + col) : 0.0f;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float s = WarpSum(acc[r]);
    if (lane == 0 && r < rows_here) y[(row0 + r) * y_stride + col] = s + b;
  }
}

template <DType kW, int kRows>
absl::Status LaunchSkinnyGemm(const GemmParams& p, int64_t x_stride, int64_t y_stride,
                              cudaStream_t stream) {
  const dim3 grid((p.n + kWarpsPerBlock - 1) / kWarpsPerBlock, (p.m + kRows - 1) / kRows);
  SkinnyGemmKernel<kW, kRows><<<grid, kWarpsPerBlock * 32, 0, stream>>>(
      p.x, p.w, p.bias, p.y, p.m, p.n, p.k, x_stride, y_stride);
  return LaunchStatus("SkinnyGemmKernel");
}

}  // namespace

absl::Status Gemm(const GemmParams& p, const Stream& stream) {
  if (p.m < 0 || p.n < 0 || p.k < 0) return absl::InvalidArgumentError("Gemm: negative shape");
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  if (p.x == nullptr || p.w == nullptr || p.y == nullptr) {
    return absl::InvalidArgumentError("Gemm: null x, w or y");
  }
  if (RowBytes(p.w_dtype, p.k) < 0) {
    return absl::InvalidArgumentError("Gemm: k must be a multiple of 32 for a quantized weight");
  }
  const int64_t x_stride = p.x_stride == 0 ? p.k : p.x_stride;
  const int64_t y_stride = p.y_stride == 0 ? p.n : p.y_stride;
  if (x_stride < p.k || y_stride < p.n)
    return absl::InvalidArgumentError("Gemm: stride below row length");
  cudaStream_t s = static_cast<cudaStream_t>(stream.cuda_stream);
  if (p.m > kSkinnyGemmMaxRows) return LaunchTensorCoreGemm(p, x_stride, y_stride, s);
  TPS_WEIGHT_DTYPE_SWITCH(p.w_dtype, kW, {
    TPS_ROWS_PER_PASS_SWITCH(p.m, kRows,
                             { return LaunchSkinnyGemm<kW, kRows>(p, x_stride, y_stride, s); });
  });
}

}  // namespace tpserve::kernels::cuda
