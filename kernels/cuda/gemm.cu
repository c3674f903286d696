// cuda::Gemm: m <= kSkinnyGemmMaxRows (decode) runs the skinny GEMM below,
// except 2 <= m with Q8_0, Q4_0, Q4_1 or BF16 weights, which take the
// tensor-core decode kernel of gemm_mma.cu; larger m the tensor-core kernel
// of gemm_tc.cu (prefill); y_fixed output (any m) the fixed-point kernel of
// gemm_fixed.cu. All read weights in the device layout of weight_layout.h.
//
// Skinny GEMM with fused weight dequantisation: one warp per weight row, up
// to kRows activation rows per pass (1, or 16 for batched decode). Per tile
// of kTileValues<kRows> columns the block stages the pass's activation rows
// in shared memory once (coalesced 16-byte loads where rows are 16-byte
// aligned), then each warp streams its weight row: lane c takes the tile's
// 16-byte chunks c, c + 32, ... of the quant plane (one Q4 block, half a
// Q8_0 block) or of a plain row, so a warp request reads up to 512
// consecutive bytes. Quantized chunks (and their scales) are loaded before
// the tile's barriers, so their latency overlaps the staging of x. A block
// has 8 warps and 2048-column tiles at kRows = 1, 16 warps and 1024-column
// tiles at kRows = 16: each block stages kRows x k floats of x for its
// weight rows, so with 4 rows per block batch-16 decode moved 26x the Q4_1
// weight bytes through L1 to stage x, with 16 rows 6.4x.
//
// Measured on an H100 (docs/benchmarks.md, "GPU", 2026-12-05) with a
// standalone copy of this kernel's batch-1 Q4_1 path in CUDA graphs
// (kernels/cuda/experiments/skinny_q4_sweep.cu): 1.5-1.9 TB/s on five
// layers 2048 to 16384 wide with the layout above, 1.2-1.6 TB/s with the
// earlier 4 warps, 1024 columns and loads after the barriers; about 2 us
// per call on SmolLM2's 576-wide layers (latency, not bandwidth). Batch
// 16, Q4_1: 160-190 GB/s, bound by shared-memory reads of x (one 16-byte
// read per 4 FMAs); two weight rows per warp gave at most 1.5x there, so
// the next step is tensor cores (mma m16n8k16 on x rows) rather than more
// f32 FMAs.
//
// x stays f32 (not int8 with dp4a): f32 math on f32 activations keeps the
// path within gemm_test's 1e-9 NMSE of an f64 reference.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/skinny_gemm.cuh"

namespace tpserve::kernels::cuda {
namespace {

// One launch per GEMM: SkinnyGemmBlock (skinny_gemm.cuh) per block.
template <DType kW, int kRows, bool kVec, bool kSwiglu, Fusion kFusion = Fusion::kNone>
__global__ void __launch_bounds__(kWarpsPerBlock<kRows> * 32)
    SkinnyGemmKernel(const float* __restrict__ x, const void* __restrict__ w,
                     const float* __restrict__ bias, float* __restrict__ y, int m, int n, int k,
                     int64_t x_stride, int64_t y_stride, const float* __restrict__ norm, float eps,
                     L2Prefetch prefetch) {
  SkinnyGemmBlock<kW, kRows, kVec, kSwiglu, kFusion>(
      x, w, bias, y, m, n, k, x_stride, y_stride, norm, eps, prefetch, blockIdx.x, blockIdx.y,
      blockIdx.x + blockIdx.y * gridDim.x, gridDim.x * gridDim.y);
}

template <DType kW, int kRows, bool kSwiglu, Fusion kFusion = Fusion::kNone>
absl::Status LaunchSkinnyGemm(const GemmParams& p, int64_t x_stride, int64_t y_stride,
                              const LaunchStream& stream, const GemmFusion& f = {}) {
  constexpr int kWarps = kWarpsPerBlock<kRows>;
  constexpr int kShared = static_cast<int>(SkinnyGemmSharedBytes<kRows, kFusion>());
  const int cols = kSwiglu ? p.n / 2 : p.n;
  const dim3 grid((cols + kWarps - 1) / kWarps, (p.m + kRows - 1) / kRows);
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  bool vec = aligned(p.x) && x_stride % 4 == 0 && (f.norm == nullptr || aligned(f.norm));
  // Quantized planes are 16-byte aligned by construction (weight_layout.h).
  if constexpr (!IsQuantized(kW)) vec = vec && aligned(p.w) && p.k % kVecValues<kW> == 0;
  // Launched by name in each branch: the emulator's memory model reports per kernel name.
  // The shared-memory opt-in is a host call per launch: made only where needed.
  constexpr bool kOptIn = kShared > 48 * 1024;
  if (vec) {
    if constexpr (kOptIn) {
      TPS_CUDA_RETURN_IF_ERROR(
          cudaFuncSetAttribute(SkinnyGemmKernel<kW, kRows, true, kSwiglu, kFusion>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, kShared));
    }
    LaunchKernel("SkinnyGemmKernel", SkinnyGemmKernel<kW, kRows, true, kSwiglu, kFusion>, grid,
                 kWarps * 32, kShared, stream, p.x, p.w, p.bias, p.y, p.m, p.n, p.k, x_stride,
                 y_stride, f.norm, f.eps, f.prefetch);
  } else {
    if constexpr (kOptIn) {
      TPS_CUDA_RETURN_IF_ERROR(
          cudaFuncSetAttribute(SkinnyGemmKernel<kW, kRows, false, kSwiglu, kFusion>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, kShared));
    }
    LaunchKernel("SkinnyGemmKernel", SkinnyGemmKernel<kW, kRows, false, kSwiglu, kFusion>, grid,
                 kWarps * 32, kShared, stream, p.x, p.w, p.bias, p.y, p.m, p.n, p.k, x_stride,
                 y_stride, f.norm, f.eps, f.prefetch);
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
  if (IsQuantized(p.w_dtype) && reinterpret_cast<uintptr_t>(p.w) % 16 != 0) {
    return absl::InvalidArgumentError(
        "Gemm: quantized w (weight_layout.h planes) not 16-byte aligned");
  }
  *x_stride = p.x_stride == 0 ? p.k : p.x_stride;
  *y_stride = p.y_stride == 0 ? y_cols : p.y_stride;
  if (*x_stride < p.k || *y_stride < y_cols)
    return absl::InvalidArgumentError("Gemm: stride below row length");
  return absl::OkStatus();
}

}  // namespace

absl::Status Gemm(const GemmParams& p, const Stream& stream, const L2Prefetch& prefetch) {
  int64_t x_stride = 0, y_stride = 0;
  if (absl::Status st = CheckGemm(p, p.n, &x_stride, &y_stride); !st.ok()) return st;
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  cudaStream_t s = static_cast<cudaStream_t>(stream.cuda_stream);
  if (p.y_fixed != nullptr) return LaunchFixedGemm(p, x_stride, y_stride, s);
  if (p.m > kSkinnyGemmMaxRows) return LaunchTensorCoreGemm(p, x_stride, y_stride, s);
  const LaunchStream ls = ForLaunch(stream);
  if (SkinnyMmaSupports(p)) {
    return LaunchSkinnyMma(p, /*swiglu=*/false, x_stride, y_stride, ls, prefetch);
  }
  TPS_WEIGHT_DTYPE_SWITCH(p.w_dtype, kW, {
    TPS_ROWS_PER_PASS_SWITCH(
        p.m, kRows, { return LaunchSkinnyGemm<kW, kRows, false>(p, x_stride, y_stride, ls); });
  });
}

int64_t GemmViaBf16ScratchElems(int m, int n, int k) {
  return (static_cast<int64_t>(m) + n) * GemmViaBf16RowElems(k);
}

absl::Status GemmViaBf16(const GemmParams& p, uint16_t* scratch, const Stream& stream,
                         Bf16Gemm gemm, bool x_in_scratch) {
  if (p.y_fixed != nullptr)
    return absl::InvalidArgumentError("GemmViaBf16: y_fixed is not supported");
  int64_t x_stride = 0, y_stride = 0;
  if (absl::Status st = CheckGemm(p, p.n, &x_stride, &y_stride); !st.ok()) return st;
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  if (scratch == nullptr || reinterpret_cast<uintptr_t>(scratch) % 16 != 0) {
    return absl::InvalidArgumentError("GemmViaBf16: scratch must be non-null and 16-byte aligned");
  }
  return LaunchViaBf16Gemm(p, x_stride, y_stride, scratch,
                           static_cast<cudaStream_t>(stream.cuda_stream), gemm, x_in_scratch);
}

absl::Status GemmFused(const GemmParams& p, const GemmFusion& f, bool swiglu,
                       const Stream& stream) {
  if (p.m != 1 || p.y_fixed != nullptr) {
    return absl::InvalidArgumentError("GemmFused: m must be 1, with a float y");
  }
  if ((f.norm != nullptr) == f.add_to_y) {
    return absl::InvalidArgumentError("GemmFused: exactly one of norm and add_to_y");
  }
  if (f.add_to_y && swiglu) return absl::InvalidArgumentError("GemmFused: add_to_y with swiglu");
  if (swiglu && p.n % 2 != 0) return absl::InvalidArgumentError("GemmFused: n (gate + up) is odd");
  if (f.norm != nullptr && p.x_stride != 0 && p.x_stride != p.k) {
    return absl::InvalidArgumentError("GemmFused: norm needs a dense x row");
  }
  int64_t x_stride = 0, y_stride = 0;
  if (absl::Status st = CheckGemm(p, swiglu ? p.n / 2 : p.n, &x_stride, &y_stride); !st.ok()) {
    return st;
  }
  if (p.n == 0) return absl::OkStatus();
  const LaunchStream s = ForLaunch(stream);
  TPS_WEIGHT_DTYPE_SWITCH(p.w_dtype, kW, {
    if (f.add_to_y) {
      return LaunchSkinnyGemm<kW, 1, false, Fusion::kAddToY>(p, x_stride, y_stride, s, f);
    }
    if (swiglu) return LaunchSkinnyGemm<kW, 1, true, Fusion::kNormX>(p, x_stride, y_stride, s, f);
    return LaunchSkinnyGemm<kW, 1, false, Fusion::kNormX>(p, x_stride, y_stride, s, f);
  });
}

absl::Status GemmSkinny(const GemmParams& p, const Stream& stream) {
  if (p.y_fixed != nullptr || p.m > kSkinnyGemmMaxRows) {
    return absl::InvalidArgumentError("GemmSkinny: y_fixed output or m above kSkinnyGemmMaxRows");
  }
  int64_t x_stride = 0, y_stride = 0;
  if (absl::Status st = CheckGemm(p, p.n, &x_stride, &y_stride); !st.ok()) return st;
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  const LaunchStream s = ForLaunch(stream);
  TPS_WEIGHT_DTYPE_SWITCH(p.w_dtype, kW, {
    TPS_ROWS_PER_PASS_SWITCH(
        p.m, kRows, { return LaunchSkinnyGemm<kW, kRows, false>(p, x_stride, y_stride, s); });
  });
}

absl::Status GemmTensorCore(const GemmParams& p, const Stream& stream) {
  if (p.y_fixed != nullptr) {
    return absl::InvalidArgumentError("GemmTensorCore: y_fixed output is not supported");
  }
  int64_t x_stride = 0, y_stride = 0;
  if (absl::Status st = CheckGemm(p, p.n, &x_stride, &y_stride); !st.ok()) return st;
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  return LaunchTensorCoreGemm(p, x_stride, y_stride, static_cast<cudaStream_t>(stream.cuda_stream));
}

absl::Status GemmSwiglu(const GemmParams& p, const Stream& stream, const L2Prefetch& prefetch) {
  if (p.n % 2 != 0) return absl::InvalidArgumentError("GemmSwiglu: n (gate + up rows) is odd");
  if (p.m > kSkinnyGemmMaxRows) {
    return absl::InvalidArgumentError("GemmSwiglu: m above kSkinnyGemmMaxRows");
  }
  int64_t x_stride = 0, y_stride = 0;
  if (absl::Status st = CheckGemm(p, p.n / 2, &x_stride, &y_stride); !st.ok()) return st;
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  const LaunchStream s = ForLaunch(stream);
  if (SkinnyMmaSupports(p)) {
    return LaunchSkinnyMma(p, /*swiglu=*/true, x_stride, y_stride, s, prefetch);
  }
  TPS_WEIGHT_DTYPE_SWITCH(p.w_dtype, kW, {
    TPS_ROWS_PER_PASS_SWITCH(
        p.m, kRows, { return LaunchSkinnyGemm<kW, kRows, true>(p, x_stride, y_stride, s); });
  });
}

}  // namespace tpserve::kernels::cuda
