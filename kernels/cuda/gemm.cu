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

#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/prefetch.cuh"
#include "kernels/cuda/quant.cuh"
#include "kernels/cuda/shared_memory.cuh"
#include "kernels/cuda/staged_x.cuh"

namespace tpserve::kernels::cuda {
namespace {

// Weight rows (warps) per block and columns of x staged per tile: see the
// file comment.
template <int kRows>
constexpr int kWarpsPerBlock = kRows == 1 ? 8 : 16;
template <int kRows>
constexpr int kTileValues = kRows == 1 ? 2048 : 1024;
// Staged row pitch in floats (staged_x.cuh's padding).
template <int kRows>
constexpr int kTilePitch = kTileValues<kRows> + kTileValues<kRows> / 8;
static_assert(kTileValues<16> % (32 * kChunkValues<DType::kQ4_0>) == 0 &&
                  kTileValues<16> % (32 * kChunkValues<DType::kQ8_0>) == 0 &&
                  kTileValues<1> % kTileValues<16> == 0,
              "a tile holds whole chunks for every lane");

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

// What the skinny kernel fuses around itself at m = 1 (GemmFusion).
enum class Fusion { kNone, kNormX, kAddToY };

// Copies columns [k0, k0 + width) of activation rows [0, rows_here) into xs
// (row r at xs + r * kTilePitch, padded). kVec: rows 16-byte aligned (and
// `norm`, when set). norm: each value becomes x * inv * norm[column], as
// RmsNormKernel writes it.
template <int kRows, bool kVec>
__device__ __forceinline__ void StageTile(float* xs, const float* xrow0, int64_t x_stride,
                                          int rows_here, int k0, int width, const float* norm,
                                          float inv) {
  constexpr int kPitch = kTilePitch<kRows>;
  if constexpr (kVec) {
    const int quads = width / 4;
    for (int i = threadIdx.x; i < rows_here * quads; i += blockDim.x) {
      const int r = i / quads, c = (i % quads) * 4;
      float4 v = __ldg(reinterpret_cast<const float4*>(xrow0 + r * x_stride + k0 + c));
      if (norm != nullptr) {
        const float4 g = __ldg(reinterpret_cast<const float4*>(norm + k0 + c));
        v = {v.x * inv * g.x, v.y * inv * g.y, v.z * inv * g.z, v.w * inv * g.w};
      }
      *reinterpret_cast<float4*>(xs + r * kPitch + Padded(c)) = v;
    }
  } else {
    for (int i = threadIdx.x; i < rows_here * width; i += blockDim.x) {
      const int r = i / width, c = i % width;
      const float v = __ldg(xrow0 + r * x_stride + k0 + c);
      xs[r * kPitch + Padded(c)] = norm != nullptr ? v * inv * __ldg(norm + k0 + c) : v;
    }
  }
}

// kFusion == kNormX: 1 / rms of the block's x row (k values), with
// RmsNormKernel's arithmetic: its 256-thread partition of the row and its
// block reduction, so the staged values have RmsNorm's bits.
template <Fusion kFusion>
__device__ __forceinline__ float InverseRms(const float* x, int k, float eps) {
  if constexpr (kFusion != Fusion::kNormX) {
    return 1.0f;
  } else {
    __shared__ float scratch[32];
    float ss = 0.0f;
    for (int i = threadIdx.x; i < k; i += blockDim.x) ss = fmaf(x[i], x[i], ss);
    ss = BlockSum(ss, scratch);
    return rsqrtf(ss / static_cast<float>(k) + eps);
  }
}

// kFusion == kNormX with the whole row in one tile: x read once. The block
// stages x into xs and the norm weights after it (xs + kTilePitch<1>, in the
// same round trip), sums x's squares from xs (InverseRms's partition, order
// and reduction), then scales each staged value by StageTile's expression:
// xs gets InverseRms-then-StageTile's bits with one dependent read of x
// (from L2) fewer per launch.
template <bool kVec>
__device__ __forceinline__ void StageNormedRow(float* xs, const float* x, int k, const float* norm,
                                               float eps) {
  float* gs = xs + kTilePitch<1>;
  if constexpr (kVec) {
    for (int c = 4 * threadIdx.x; c < k; c += 4 * blockDim.x) {
      *reinterpret_cast<float4*>(xs + Padded(c)) = __ldg(reinterpret_cast<const float4*>(x + c));
      *reinterpret_cast<float4*>(gs + Padded(c)) = __ldg(reinterpret_cast<const float4*>(norm + c));
    }
  } else {
    for (int c = threadIdx.x; c < k; c += blockDim.x) {
      xs[Padded(c)] = __ldg(x + c);
      gs[Padded(c)] = __ldg(norm + c);
    }
  }
  __syncthreads();
  __shared__ float scratch[32];
  float ss = 0.0f;
  for (int i = threadIdx.x; i < k; i += blockDim.x) ss = fmaf(xs[Padded(i)], xs[Padded(i)], ss);
  // BlockSum's barriers order every read of xs above before the writes below.
  const float inv = rsqrtf(BlockSum(ss, scratch) / static_cast<float>(k) + eps);
  for (int c = threadIdx.x; c < k; c += blockDim.x) {
    xs[Padded(c)] = xs[Padded(c)] * inv * gs[Padded(c)];
  }
  __syncthreads();
}

// Stages tile [k0, k0 + width) of the pass's x rows into xs, waiting first
// (at the first tile) for the kernel that writes x. kNormX: RmsNorm(x) *
// norm instead, a row that fits one tile read once (StageNormedRow), a
// longer one twice (InverseRms at the first tile, then each tile).
template <Fusion kFusion, int kRows, bool kVec>
__device__ __forceinline__ void StageX(float* xs, const float* xrow0, int64_t x_stride,
                                       int rows_here, int k0, int width, int k, const float* norm,
                                       float eps, float* inv) {
  if (k0 == 0) WaitForPrimary();
  if constexpr (kFusion == Fusion::kNormX) {
    if (k <= kTileValues<kRows>) {
      StageNormedRow<kVec>(xs, xrow0, k, norm, eps);
      return;
    }
    if (k0 == 0) *inv = InverseRms<kFusion>(xrow0, k, eps);
  }
  __syncthreads();  // every warp is done with the previous tile
  StageTile<kRows, kVec>(xs, xrow0, x_stride, rows_here, k0, width,
                         kFusion == Fusion::kNormX ? norm : nullptr, *inv);
  __syncthreads();
}

// A lane's quantized chunks of one weight row for one tile (the tile's
// chunks lane, lane + 32, ...) with their scales: loaded before the tile's
// barriers, consumed after them.
template <DType kW, int kRows>
struct LaneChunks {
  static constexpr int kCv = kChunkValues<kW>;
  static constexpr int kPer = kTileValues<kRows> / kCv / 32;
  uint4 q[kPer];
  float d[kPer], m[kPer];

  __device__ __forceinline__ void Load(const PackedQuantRows& pw, int k, int row, int k0, int width,
                                       int lane) {
    const uint4* chunks = pw.quants + (static_cast<int64_t>(row) * k + k0) / kCv;
    const int64_t block0 = static_cast<int64_t>(row) * pw.blocks_per_row + k0 / 32;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int c = lane + 32 * i;
      q[i] = {};
      d[i] = m[i] = 0.0f;
      if (c < width / kCv) {
        q[i] = __ldg(chunks + c);
        LoadScales<kW>(pw, block0 + c * kCv / 32, &d[i], &m[i]);
      }
    }
  }

  // Adds each chunk . staged x into acc[r], chunk by chunk (the order of
  // TileDots below).
  __device__ __forceinline__ void Dots(const float* xs, int width, int rows_here, int lane,
                                       float acc[kRows]) const {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int c = lane + 32 * i;
      if (c >= width / kCv) break;
      float v[kCv];
      DequantChunk<kW>(q[i], d[i], m[i], v);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < rows_here) {
          acc[r] += DotStaged<kCv>(v, xs + r * kTilePitch<kRows> + Padded(c * kCv));
        }
      }
    }
  }
};

// Adds plain (F32/F16/BF16) weight row `row` . staged x over tile columns
// [k0, k0 + width) into this lane's acc[r] (lanes split the tile; the caller
// reduces over the warp). kVec: x rows and weight rows 16-byte aligned (rows
// holding whole 16-byte chunks).
template <DType kW, int kRows, bool kVec>
__device__ __forceinline__ void TileDots(const void* w, int k, int row, const float* xs, int k0,
                                         int width, int rows_here, int lane, float acc[kRows]) {
  constexpr int kPitch = kTilePitch<kRows>;
  if constexpr (kVec) {
    constexpr int kV = kVecValues<kW>;
    const uint4* wv = static_cast<const uint4*>(RowPointer(w, kW, k, row)) + k0 / kV;
    for (int c = lane; c < width / kV; c += 32) {
      float v[kV];
      UnpackVec<kW>(__ldg(wv + c), v);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < rows_here) acc[r] += DotStaged<kV>(v, xs + r * kPitch + Padded(c * kV));
      }
    }
  } else {
    const void* wrow = RowPointer(w, kW, k, row);
    for (int i = lane; i < width; i += 32) {
      const float wv = LoadElement<kW>(wrow, k0 + i);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < rows_here) acc[r] = fmaf(wv, xs[r * kPitch + Padded(i)], acc[r]);
      }
    }
  }
}

// One warp per output column. kSwiglu: the weight holds 2 * cols rows (gate
// rows, then up rows); the warp computes gate row `col` and up row
// `col + cols` and writes silu(gate) * up, exactly what Gemm then Swiglu
// write.
// kFusion (kRows = 1 only): kNormX stages RmsNorm(x) * norm instead of x;
// kAddToY adds to y (y += x w^T + bias, as Gemm then Add). Fused kernels
// also prefetch `prefetch` into L2 (prefetch.cuh), shared out by block.
template <DType kW, int kRows, bool kVec, bool kSwiglu, Fusion kFusion = Fusion::kNone>
__global__ void __launch_bounds__(kWarpsPerBlock<kRows> * 32)
    SkinnyGemmKernel(const float* __restrict__ x, const void* __restrict__ w,
                     const float* __restrict__ bias, float* __restrict__ y, int m, int n, int k,
                     int64_t x_stride, int64_t y_stride, const float* __restrict__ norm, float eps,
                     L2Prefetch prefetch) {
  static_assert(kFusion == Fusion::kNone || kRows == 1, "fusions are for one activation row");
  static_assert(kFusion != Fusion::kNormX || kWarpsPerBlock<1> * 32 == 256,
                "RmsNormKernel's 256-thread reduction");
  // kRows staged rows of kTilePitch floats (SkinnyGemmSharedBytes), dynamic:
  // the emulator keeps static __shared__ per OS thread, and one 72 KiB array
  // per instantiation would take megabytes of every thread's TLS.
  float* xs = DynamicSharedMemory<float>();
  const int lane = threadIdx.x & 31;
  const int col = blockIdx.x * kWarpsPerBlock<kRows> + (threadIdx.x >> 5);
  const int cols = kSwiglu ? n / 2 : n;
  const int row0 = blockIdx.y * kRows;
  // Warps past the last column still stage x and meet every barrier.
  const bool active = col < cols;
  const int rows_here = min(kRows, m - row0);
  const float* xrow0 = x + row0 * x_stride;

  AllowDependents();
  if constexpr (kFusion != Fusion::kNone) {
    // Another kernel's weights (fixed): issued before the wait for x. Only
    // in the fused (batch-1, one rank) kernels: in the others the code made
    // ptxas spill on sm_90a, and the decode batches of 2-64 go to
    // gemm_mma.cu's kernel, which prefetches itself.
    PrefetchShareL2(prefetch, blockIdx.x + blockIdx.y * gridDim.x, gridDim.x * gridDim.y);
  }
  float acc[kRows], up[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = up[r] = 0.0f;
  float inv = 1.0f;
  for (int k0 = 0; k0 < k; k0 += kTileValues<kRows>) {
    const int width = min(kTileValues<kRows>, k - k0);
    if constexpr (IsQuantized(kW)) {
      // This tile's weight chunks first: their loads are in flight while
      // the block waits for the previous tile's readers and stages x.
      const PackedQuantRows pw = PackedRows<kW>(w, n, k);
      LaneChunks<kW, kRows> gate, upc;
      if (active) {
        gate.Load(pw, k, col, k0, width, lane);
        if constexpr (kSwiglu) upc.Load(pw, k, col + cols, k0, width, lane);
      }
      // Weights are fixed: the first tile's chunks load before the wait
      // for the kernel that writes x (launch.cuh), x while they load.
      StageX<kFusion, kRows, kVec>(xs, xrow0, x_stride, rows_here, k0, width, k, norm, eps, &inv);
      if (!active) continue;
      gate.Dots(xs, width, rows_here, lane, acc);
      if constexpr (kSwiglu) upc.Dots(xs, width, rows_here, lane, up);
    } else {
      StageX<kFusion, kRows, kVec>(xs, xrow0, x_stride, rows_here, k0, width, k, norm, eps, &inv);
      if (!active) continue;
      TileDots<kW, kRows, kVec>(w, k, col, xs, k0, width, rows_here, lane, acc);
      if constexpr (kSwiglu) {
        TileDots<kW, kRows, kVec>(w, k, col + cols, xs, k0, width, rows_here, lane, up);
      }
    }
  }
  WaitForPrimary();  // k = 0: the loop never waited
  if (!active) return;
  const float b = bias != nullptr ? __ldg(bias + col) : 0.0f;
  if constexpr (kSwiglu) {
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
      if (lane == 0 && r < rows_here) {
        float* out = y + (row0 + r) * y_stride + col;
        *out = kFusion == Fusion::kAddToY ? *out + (s + b) : s + b;
      }
    }
  }
}

// kRows staged rows, plus the norm weights' row with kNormX (StageNormedRow).
template <int kRows, Fusion kFusion = Fusion::kNone>
constexpr size_t SkinnyGemmSharedBytes() {
  return sizeof(float) * (kRows + (kFusion == Fusion::kNormX ? 1 : 0)) * kTilePitch<kRows>;
}
// Above 48 KiB needs the opt-in below (kRows = 16); sm_80's limit is 163 KiB
// per block.
static_assert(SkinnyGemmSharedBytes<16>() <= 163 * 1024, "within sm_80's dynamic shared limit");

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
