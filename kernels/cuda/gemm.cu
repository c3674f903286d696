// cuda::Gemm: m <= kSkinnyGemmMaxRows runs the skinny GEMM below (decode);
// larger m the tensor-core kernel of gemm_tc.cu (prefill); y_fixed output
// (any m) the fixed-point kernel of gemm_fixed.cu.
//
// Skinny GEMM with fused weight dequantisation:
// One warp per weight row (4 rows per 128-thread block); lanes stride over the
// row's 32-value blocks (quantized types) or elements (plain types), so a warp
// reads each weight row once, coalesced, per pass of kRows activation rows.
// Activations are read through L1 (each lane walks 32 consecutive floats).
// Where rows are 16-byte aligned (the usual case) plain weights and the
// activations move in 16-byte loads, cutting load instructions 4-8x.
#include <cuda_runtime.h>

#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/quant.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;

// Values in one 16-byte load of a plain weight type.
template <DType kW>
constexpr int kVecValues = kW == DType::kF32 ? 4 : 8;

// The values of one 16-byte chunk of a plain (F32/F16/BF16) weight row.
template <DType kW>
__device__ __forceinline__ void UnpackVec(const uint4& raw, float* out) {
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (kW == DType::kF32) {
      out[i] = __uint_as_float(words[i]);
    } else if constexpr (kW == DType::kF16) {  // little-endian: low half first
      out[2 * i] = HalfBitsToFloat(static_cast<uint16_t>(words[i] & 0xFFFFu));
      out[2 * i + 1] = HalfBitsToFloat(static_cast<uint16_t>(words[i] >> 16));
    } else {
      out[2 * i] = Bf16BitsToFloat(static_cast<uint16_t>(words[i] & 0xFFFFu));
      out[2 * i + 1] = Bf16BitsToFloat(static_cast<uint16_t>(words[i] >> 16));
    }
  }
}

// sum_i w[i] * x[i] over kN values, x read as float4 (16-byte aligned).
template <int kN>
__device__ __forceinline__ float DotVec(const float* w, const float* x) {
  const float4* xv = reinterpret_cast<const float4*>(x);
  float s = 0.0f;
#pragma unroll
  for (int q = 0; q < kN / 4; ++q) {
    const float4 v = __ldg(xv + q);
    s = fmaf(w[4 * q], v.x, s);
    s = fmaf(w[4 * q + 1], v.y, s);
    s = fmaf(w[4 * q + 2], v.z, s);
    s = fmaf(w[4 * q + 3], v.w, s);
  }
  return s;
}

// Adds weight row `wrow` . activation rows [0, rows_here) into this lane's
// acc[r] (lanes split the row; the caller reduces over the warp). kVec:
// every weight and activation row starts 16-byte aligned (and plain rows hold
// a whole number of 16-byte chunks), so both are read with 16-byte loads;
// otherwise element by element.
template <DType kW, int kRows, bool kVec>
__device__ __forceinline__ void RowDots(const void* wrow, const float* xrow0, int64_t x_stride,
                                        int k, int rows_here, int lane, float acc[kRows]) {
  if constexpr (IsQuantized(kW)) {
    const int blocks = k / 32;
    for (int b = lane; b < blocks; b += 32) {
      float v[32];
      LoadBlock32<kW>(wrow, b, v);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < rows_here) {
          const float* xs = xrow0 + r * x_stride + b * 32;
          if constexpr (kVec) {
            acc[r] += DotVec<32>(v, xs);
          } else {
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < 32; ++i) s = fmaf(v[i], __ldg(xs + i), s);
            acc[r] += s;
          }
        }
      }
    }
  } else if constexpr (kVec) {
    constexpr int kV = kVecValues<kW>;
    const uint4* wv = static_cast<const uint4*>(wrow);
    for (int c = lane; c < k / kV; c += 32) {
      float v[kV];
      UnpackVec<kW>(__ldg(wv + c), v);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < rows_here) acc[r] += DotVec<kV>(v, xrow0 + r * x_stride + c * kV);
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
}

// One warp per output column. kSwiglu: the weight holds 2 * cols rows (gate
// rows, then up rows); the warp computes gate row `col` and up row
// `col + cols` and writes silu(gate) * up, exactly what Gemm then Swiglu
// write.
template <DType kW, int kRows, bool kVec, bool kSwiglu>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    SkinnyGemmKernel(const float* __restrict__ x, const void* __restrict__ w,
                     const float* __restrict__ bias, float* __restrict__ y, int m, int n, int k,
                     int64_t x_stride, int64_t y_stride) {
  const int lane = threadIdx.x & 31;
  const int col = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  const int cols = kSwiglu ? n / 2 : n;
  const int row0 = blockIdx.y * kRows;
  if (col >= cols) return;
  const int rows_here = min(kRows, m - row0);
  const float* xrow0 = x + row0 * x_stride;

  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;
  RowDots<kW, kRows, kVec>(RowPointer(w, kW, k, col), xrow0, x_stride, k, rows_here, lane, acc);
  const float b = bias != nullptr ? __ldg(bias + col) : 0.0f;
  if constexpr (kSwiglu) {
    float up[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) up[r] = 0.0f;
    RowDots<kW, kRows, kVec>(RowPointer(w, kW, k, col + cols), xrow0, x_stride, k, rows_here, lane,
                             up);
    const float bu = bias != nullptr ? __ldg(bias + col + cols) : 0.0f;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float g = WarpSum(acc[r]);
      const float u = WarpSum(up[r]);
      if (lane == 0 && r < rows_here) y[(row0 + r) * y_stride + col] = SiluMul(g + b, u + bu);
    }
  } else {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float s = WarpSum(acc[r]);
      if (lane == 0 && r < rows_here) y[(row0 + r) * y_stride + col] = s + b;
    }
  }
}

template <DType kW, int kRows, bool kSwiglu>
absl::Status LaunchSkinnyGemm(const GemmParams& p, int64_t x_stride, int64_t y_stride,
                              cudaStream_t stream) {
  const int cols = kSwiglu ? p.n / 2 : p.n;
  const dim3 grid((cols + kWarpsPerBlock - 1) / kWarpsPerBlock, (p.m + kRows - 1) / kRows);
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  bool vec = aligned(p.x) && x_stride % 4 == 0;
  if constexpr (!IsQuantized(kW)) vec = vec && aligned(p.w) && p.k % kVecValues<kW> == 0;
  if (vec) {
    SkinnyGemmKernel<kW, kRows, true, kSwiglu><<<grid, kWarpsPerBlock * 32, 0, stream>>>(
        p.x, p.w, p.bias, p.y, p.m, p.n, p.k, x_stride, y_stride);
  } else {
    SkinnyGemmKernel<kW, kRows, false, kSwiglu><<<grid, kWarpsPerBlock * 32, 0, stream>>>(
        p.x, p.w, p.bias, p.y, p.m, p.n, p.k, x_stride, y_stride);
  }
  return LaunchStatus("SkinnyGemmKernel");
}

// Shape checks shared by Gemm and GemmSwiglu; the strides with defaults applied.
absl::Status CheckGemm(const GemmParams& p, int64_t y_cols, int64_t* x_stride, int64_t* y_stride) {
  if (p.m < 0 || p.n < 0 || p.k < 0) return absl::InvalidArgumentError("Gemm: negative shape");
  if (p.m > 0 && p.n > 0 &&
      (p.x == nullptr || p.w == nullptr || (p.y == nullptr && p.y_fixed == nullptr))) {
    return absl::InvalidArgumentError("Gemm: null x, w or y");
  }
  if (RowBytes(p.w_dtype, p.k) < 0) {
    return absl::InvalidArgumentError("Gemm: k must be a multiple of 32 for a quantized weight");
  }
  *x_stride = p.x_stride == 0 ? p.k : p.x_stride;
  *y_stride = p.y_stride == 0 ? y_cols : p.y_stride;
  if (*x_stride < p.k || *y_stride < y_cols)
    return absl::InvalidArgumentError("Gemm: stride below row length");
  return absl::OkStatus();
}

}  // namespace

absl::Status Gemm(const GemmParams& p, const Stream& stream) {
  int64_t x_stride = 0, y_stride = 0;
  if (absl::Status st = CheckGemm(p, p.n, &x_stride, &y_stride); !st.ok()) return st;
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  cudaStream_t s = static_cast<cudaStream_t>(stream.cuda_stream);
  if (p.y_fixed != nullptr) return LaunchFixedGemm(p, x_stride, y_stride, s);
  if (p.m > kSkinnyGemmMaxRows) return LaunchTensorCoreGemm(p, x_stride, y_stride, s);
  TPS_WEIGHT_DTYPE_SWITCH(p.w_dtype, kW, {
    TPS_ROWS_PER_PASS_SWITCH(
        p.m, kRows, { return LaunchSkinnyGemm<kW, kRows, false>(p, x_stride, y_stride, s); });
  });
}

absl::Status GemmSwiglu(const GemmParams& p, const Stream& stream) {
  if (p.n % 2 != 0) return absl::InvalidArgumentError("GemmSwiglu: n (gate + up rows) is odd");
  if (p.m > kSkinnyGemmMaxRows) {
    return absl::InvalidArgumentError("GemmSwiglu: m above kSkinnyGemmMaxRows");
  }
  int64_t x_stride = 0, y_stride = 0;
  if (absl::Status st = CheckGemm(p, p.n / 2, &x_stride, &y_stride); !st.ok()) return st;
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  cudaStream_t s = static_cast<cudaStream_t>(stream.cuda_stream);
  TPS_WEIGHT_DTYPE_SWITCH(p.w_dtype, kW, {
    TPS_ROWS_PER_PASS_SWITCH(
        p.m, kRows, { return LaunchSkinnyGemm<kW, kRows, true>(p, x_stride, y_stride, s); });
  });
}

}  // namespace tpserve::kernels::cuda
