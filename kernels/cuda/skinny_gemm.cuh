// The skinny GEMM's block (gemm.cu's file comment): one warp per weight row,
// x staged in shared memory per tile, quantized weights dequantised on the
// fly. SkinnyGemmBlock is one block's work with its block index passed in,
// so that gemm.cu's SkinnyGemmKernel (one launch per GEMM) and
// decode_persistent.cu's kernel (every GEMM of a decode step in one
// cooperative launch, block indices looped over) run the same code: the same
// bits by construction.
//
//   // in a kernel of kWarpsPerBlock<1> * 32 threads with
//   // SkinnyGemmSharedBytes<1, Fusion::kNormX>() of dynamic shared memory:
//   SkinnyGemmBlock<kW, 1, true, false, Fusion::kNormX>(x, w, bias, y, 1, n, k, k, n, norm, eps,
//                                                       prefetch, blockIdx.x, 0, blockIdx.x,
//                                                       gridDim.x);
#ifndef TPSERVE_KERNELS_CUDA_SKINNY_GEMM_CUH_
#define TPSERVE_KERNELS_CUDA_SKINNY_GEMM_CUH_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "formats/dtype.h"
#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/prefetch.cuh"
#include "kernels/cuda/quant.cuh"
#include "kernels/cuda/shared_memory.cuh"
#include "kernels/cuda/staged_x.cuh"

namespace tpserve::kernels::cuda {
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

// Who wrote x: an earlier kernel (gemm.cu: read through the read-only path,
// __ldg), or other blocks of the same launch (decode_persistent.cu: plain
// loads, which cooperative.cuh says why). Plain loads everywhere cost two
// fused sm_90a variants of gemm.cu 8-32 bytes of spills (ptxas_baseline.tsv).
enum class XWriter { kEarlierKernel, kSameLaunch };

template <XWriter kX, typename T>
__device__ __forceinline__ T LoadX(const T* p) {
  if constexpr (kX == XWriter::kSameLaunch) {
    return *p;
  } else {
    return __ldg(p);
  }
}

// Copies columns [k0, k0 + width) of activation rows [0, rows_here) into xs
// (row r at xs + r * kTilePitch, padded). kVec: rows 16-byte aligned (and
// `norm`, when set). norm: each value becomes x * inv * norm[column], as
// RmsNormKernel writes it. x loads as kX says; the norm weights are fixed.
template <int kRows, bool kVec, XWriter kX>
__device__ __forceinline__ void StageTile(float* xs, const float* xrow0, int64_t x_stride,
                                          int rows_here, int k0, int width, const float* norm,
                                          float inv) {
  constexpr int kPitch = kTilePitch<kRows>;
  if constexpr (kVec) {
    const int quads = width / 4;
    for (int i = threadIdx.x; i < rows_here * quads; i += blockDim.x) {
      const int r = i / quads, c = (i % quads) * 4;
      float4 v = LoadX<kX>(reinterpret_cast<const float4*>(xrow0 + r * x_stride + k0 + c));
      if (norm != nullptr) {
        const float4 g = __ldg(reinterpret_cast<const float4*>(norm + k0 + c));
        v = {v.x * inv * g.x, v.y * inv * g.y, v.z * inv * g.z, v.w * inv * g.w};
      }
      *reinterpret_cast<float4*>(xs + r * kPitch + Padded(c)) = v;
    }
  } else {
    for (int i = threadIdx.x; i < rows_here * width; i += blockDim.x) {
      const int r = i / width, c = i % width;
      const float v = LoadX<kX>(xrow0 + r * x_stride + k0 + c);
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
template <bool kVec, XWriter kX>
__device__ __forceinline__ void StageNormedRow(float* xs, const float* x, int k, const float* norm,
                                               float eps) {
  float* gs = xs + kTilePitch<1>;
  if constexpr (kVec) {
    for (int c = 4 * threadIdx.x; c < k; c += 4 * blockDim.x) {
      *reinterpret_cast<float4*>(xs + Padded(c)) =
          LoadX<kX>(reinterpret_cast<const float4*>(x + c));
      *reinterpret_cast<float4*>(gs + Padded(c)) = __ldg(reinterpret_cast<const float4*>(norm + c));
    }
  } else {
    for (int c = threadIdx.x; c < k; c += blockDim.x) {
      xs[Padded(c)] = LoadX<kX>(x + c);
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
template <Fusion kFusion, int kRows, bool kVec, XWriter kX>
__device__ __forceinline__ void StageX(float* xs, const float* xrow0, int64_t x_stride,
                                       int rows_here, int k0, int width, int k, const float* norm,
                                       float eps, float* inv) {
  if (k0 == 0) WaitForPrimary();
  if constexpr (kFusion == Fusion::kNormX) {
    if (k <= kTileValues<kRows>) {
      StageNormedRow<kVec, kX>(xs, xrow0, k, norm, eps);
      return;
    }
    if (k0 == 0) *inv = InverseRms<kFusion>(xrow0, k, eps);
  }
  __syncthreads();  // every warp is done with the previous tile
  StageTile<kRows, kVec, kX>(xs, xrow0, x_stride, rows_here, k0, width,
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
// One block's work: column block bx, row pass by; `block` of `blocks` in
// all for the prefetch's share (a kernel of kWarpsPerBlock<kRows> * 32
// threads with SkinnyGemmSharedBytes<kRows, kFusion>() of dynamic shared
// memory). x_staged: shared memory already holds what this call would
// stage, from an earlier call of the same thread block on the same x, k,
// norm and row pass with k <= kTileValues<kRows> (decode_persistent.cu's
// later blocks of a phase); this call then stages nothing.
template <DType kW, int kRows, bool kVec, bool kSwiglu, Fusion kFusion = Fusion::kNone,
          XWriter kX = XWriter::kEarlierKernel>
__device__ __forceinline__ void SkinnyGemmBlock(
    const float* __restrict__ x, const void* __restrict__ w, const float* __restrict__ bias,
    float* __restrict__ y, int m, int n, int k, int64_t x_stride, int64_t y_stride,
    const float* __restrict__ norm, float eps, const L2Prefetch& prefetch, int bx, int by,
    int block, int blocks, bool x_staged = false) {
  static_assert(kFusion == Fusion::kNone || kRows == 1, "fusions are for one activation row");
  static_assert(kFusion != Fusion::kNormX || kWarpsPerBlock<1> * 32 == 256,
                "RmsNormKernel's 256-thread reduction");
  // kRows staged rows of kTilePitch floats (SkinnyGemmSharedBytes), dynamic:
  // the emulator keeps static __shared__ per OS thread, and one 72 KiB array
  // per instantiation would take megabytes of every thread's TLS.
  float* xs = DynamicSharedMemory<float>();
  const int lane = threadIdx.x & 31;
  const int col = bx * kWarpsPerBlock<kRows> + (threadIdx.x >> 5);
  const int cols = kSwiglu ? n / 2 : n;
  const int row0 = by * kRows;
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
    PrefetchShareL2(prefetch, block, blocks);
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
      if (!x_staged) {
        StageX<kFusion, kRows, kVec, kX>(xs, xrow0, x_stride, rows_here, k0, width, k, norm, eps,
                                         &inv);
      }
      if (!active) continue;
      gate.Dots(xs, width, rows_here, lane, acc);
      if constexpr (kSwiglu) upc.Dots(xs, width, rows_here, lane, up);
    } else {
      if (!x_staged) {
        StageX<kFusion, kRows, kVec, kX>(xs, xrow0, x_stride, rows_here, k0, width, k, norm, eps,
                                         &inv);
      }
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

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_SKINNY_GEMM_CUH_
