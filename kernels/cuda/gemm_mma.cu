// cuda::Gemm and cuda::GemmSwiglu for decode batches (2 <= m <=
// kSkinnyGemmMaxRows) on tensor cores, for Q8_0, Q4_0, Q4_1 and BF16
// weights; gemm.cu dispatches here (SkinnyMmaSupports) and keeps its skinny
// kernel for m = 1 and for F32/F16 weights.
//
// mma.m16n8k16 (bf16 operands, f32 accumulation) with the weights as A: a
// block owns 16 weight rows (output columns; 16 gate and 16 up rows for
// GemmSwiglu) and all m activation rows, as ceil(m / 8) n-tiles of 8. Its 8
// warps split k in runs of kSpan 32-value blocks and add their partial sums
// in a fixed order at the end. Each weight byte is read once per call,
// whatever m. (The skinny kernel's f32 FMAs read x from shared memory once
// per 4 FMAs: 160-190 GB/s of Q4_1 weights at m = 16 on an H100, and it read
// the weights once per 16 rows of x.)
//
// Arithmetic, so that this path keeps the skinny kernel's f32-class error
// (gemm_test's 1e-9 NMSE against f64) instead of bf16's:
// - Quantized values enter the mma exactly: a Q4 nibble q as the bf16 16 + q
//   (bits 0x4180 | q << 3, made with two integer ops per pair), a Q8_0 value
//   as itself. The block's scales are applied in f32 after its mmas:
//     Q4_1: d * (P - 16 S) + m * S     Q4_0: d * (P - 24 S)     Q8_0: d * P
//   with P the block's mma sum and S the block's sum of the activations as
//   they entered the mma (so the 16 S cancels what the offset added).
// - x enters as two bf16 parts, hi = bf16(x) and lo = bf16(x - hi), each
//   multiplied by the same A: x is carried to about 2^-17 relative.
// - Inside each 16-value k group, lane t of a quad holds columns 4t .. 4t + 3
//   for A and for x alike (mma k slots 2t, 2t + 1 <- columns 4t, 4t + 2;
//   slots 2t + 8, 2t + 9 <- 4t + 1, 4t + 3). The sum does not see the order,
//   and a lane's Q4 values are then one 32-bit word of the block's qs bytes.
//
// Not yet measured on a GPU (docs/benchmarks.md); the emulator checks the
// arithmetic (gemm_test).
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/mma_sm80.cuh"
#include "kernels/cuda/prefetch.cuh"
#include "kernels/cuda/quant.cuh"
#include "kernels/cuda/shared_memory.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kWarps = 8;      // per block; they split k
constexpr int kSpan = 4;       // consecutive 32-value blocks per warp step
constexpr int kTileRows = 16;  // weight rows per tile (mma M)

// 32-bit words of one weight row's 32-value block that a lane holds.
template <DType kW>
constexpr int kWords = kW == DType::kBF16   ? 4
                       : kW == DType::kQ8_0 ? 2
                                            : 1;

// A lane's part of one weight row's run of kSpan blocks: words q[s] of
// block b0 + s (the A columns of FragmentA) and that block's scales.
template <DType kW>
struct RowRun {
  uint32_t q[kSpan][kWords<kW>];
  float d[kSpan], m[kSpan];

  // Drops block 0: the kernel's loop over a run is not unrolled (a fourth of
  // the code), so it always reads block 0 and shifts (register moves).
  __device__ __forceinline__ void Shift() {
#pragma unroll
    for (int s = 0; s + 1 < kSpan; ++s) {
#pragma unroll
      for (int i = 0; i < kWords<kW>; ++i) q[s][i] = q[s + 1][i];
      d[s] = d[s + 1];
      m[s] = m[s + 1];
    }
  }
};

// bf16 pair 16 + q of the low nibbles of bytes 0 and 2 of v (v pre-shifted).
__device__ __forceinline__ uint32_t Q4Pair(uint32_t v) {
  return ((v & 0x000F000Fu) << 3) | 0x41804180u;
}

// bf16 pair of two small integers held exactly by f32 (truncation is exact).
__device__ __forceinline__ uint32_t PackExact(float lo, float hi) {
  return (__float_as_uint(lo) >> 16) | (__float_as_uint(hi) & 0xFFFF0000u);
}

__device__ __forceinline__ float Int8At(uint32_t w, int byte) {
  return static_cast<float>(static_cast<int8_t>((w >> (8 * byte)) & 0xFFu));
}

// Lane t of each quad holds row t of a 4 x 4 matrix of words; afterwards it
// holds column t (w[j] = lane j's former w[t]). Two butterfly stages.
__device__ __forceinline__ void QuadTranspose(uint32_t w[4], int t) {
  const bool odd_pair = t & 2;  // swap the off-diagonal 2 x 2 blocks
  uint32_t r0 = __shfl_xor_sync(0xffffffffu, odd_pair ? w[0] : w[2], 2);
  uint32_t r1 = __shfl_xor_sync(0xffffffffu, odd_pair ? w[1] : w[3], 2);
  if (odd_pair) {
    w[0] = r0, w[1] = r1;
  } else {
    w[2] = r0, w[3] = r1;
  }
  const bool odd = t & 1;  // transpose each 2 x 2 block
  r0 = __shfl_xor_sync(0xffffffffu, odd ? w[0] : w[1], 1);
  r1 = __shfl_xor_sync(0xffffffffu, odd ? w[2] : w[3], 1);
  if (odd) {
    w[0] = r0, w[2] = r1;
  } else {
    w[1] = r0, w[3] = r1;
  }
}

// Row `row` (zeros where !valid) of blocks b0 .. b0 + kSpan - 1 (zeros past
// `blocks`). Quantized rows: each lane loads 16-byte chunks (a quad reads 64
// consecutive bytes of the row) and the quad transposes them, so that lane
// t ends with word t of every chunk; each lane loads one block's scales and
// the quad shares them. BF16 rows: 8-byte loads (a quad reads 32 bytes).
// Every lane of the warp must call it (shuffles).
template <DType kW>
__device__ __forceinline__ void LoadRun(const void* w, int n, int k, int row, bool valid, int b0,
                                        int blocks, int t, RowRun<kW>* run) {
  if constexpr (kW == DType::kBF16) {
    const uint32_t* r = static_cast<const uint32_t*>(RowPointer(w, kW, k, row));
#pragma unroll
    for (int s = 0; s < kSpan; ++s) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        uint2 v = {0, 0};
        if (valid && b0 + s < blocks) {
          v = __ldg(reinterpret_cast<const uint2*>(r + (32 * (b0 + s) + 16 * h + 4 * t) / 2));
        }
        run->q[s][2 * h] = v.x;
        run->q[s][2 * h + 1] = v.y;
      }
      run->d[s] = run->m[s] = 0.0f;
    }
  } else {
    static_assert(kSpan == 4, "a quad's four 16-byte chunks are four Q4 blocks or two Q8_0 blocks");
    constexpr int kChunks = kWords<kW>;  // 16-byte chunks per block
    const PackedQuantRows pw = PackedRows<kW>(w, n, k);
    const int64_t row_chunk0 = static_cast<int64_t>(row) * pw.blocks_per_row * kChunks;
#pragma unroll
    for (int u = 0; u < kChunks; ++u) {
      const int chunk = b0 * kChunks + 4 * u + t;
      uint4 v = {0, 0, 0, 0};
      if (valid && chunk < blocks * kChunks) v = __ldg(pw.quants + row_chunk0 + chunk);
      uint32_t words[4] = {v.x, v.y, v.z, v.w};
      QuadTranspose(words, t);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int c = 4 * u + j;  // chunk of the run
        run->q[c / kChunks][c % kChunks] = words[j];
      }
    }
    float d = 0.0f, m = 0.0f;
    if (valid && b0 + t < blocks) {
      LoadScales<kW>(pw, static_cast<int64_t>(row) * pw.blocks_per_row + b0 + t, &d, &m);
    }
    const int quad = (threadIdx.x & 31) & ~3;
#pragma unroll
    for (int s = 0; s < kSpan; ++s) {
      run->d[s] = __shfl_sync(0xffffffffu, d, quad + s);
      run->m[s] = kW == DType::kQ4_1 ? __shfl_sync(0xffffffffu, m, quad + s) : 0.0f;
    }
  }
}

// The A fragment (mma register order) of k group h (values 16h .. 16h + 15)
// from a lane's words: a[0], a[2] row g, a[1], a[3] row g + 8.
template <DType kW>
__device__ __forceinline__ void FragmentA(const RowRun<kW> (&rows)[2], int h, uint32_t a[4]) {
  constexpr int s = 0;  // the run's current block (RowRun::Shift)
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if constexpr (kW == DType::kBF16) {
      const uint32_t w0 = rows[r].q[s][2 * h], w1 = rows[r].q[s][2 * h + 1];  // 4t, +1 | +2, +3
      a[r] = (w0 & 0xFFFFu) | (w1 << 16);
      a[r + 2] = (w0 >> 16) | (w1 & 0xFFFF0000u);
    } else if constexpr (kW == DType::kQ8_0) {
      const uint32_t w = rows[r].q[s][h];
      a[r] = PackExact(Int8At(w, 0), Int8At(w, 2));
      a[r + 2] = PackExact(Int8At(w, 1), Int8At(w, 3));
    } else {  // Q4: group 0 the low nibbles, group 1 the high ones
      const uint32_t w = rows[r].q[s][0] >> (4 * h);
      a[r] = Q4Pair(w);
      a[r + 2] = Q4Pair(w >> 8);
    }
  }
}

// x row `row` (< m, else zeros), columns c .. c + 3, as the two bf16 parts of
// the B fragment (b[0] k slots 2t, 2t + 1; b[1] slots 2t + 8, 2t + 9); adds
// the four values as they enter the mma (hi + lo, exact in f32) to *sum.
__device__ __forceinline__ void FragmentB(const float* x, int64_t x_stride, bool vec, int row,
                                          int m, int c, uint32_t hi[2], uint32_t lo[2],
                                          float* sum) {
  float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (row < m) {
    const float* p = x + row * x_stride + c;
    if (vec) {
      const float4 f = __ldg(reinterpret_cast<const float4*>(p));
      v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) v[i] = __ldg(p + i);
    }
  }
#pragma unroll
  for (int s = 0; s < 2; ++s) {  // s = 0: columns c, c + 2; s = 1: c + 1, c + 3
    hi[s] = PackBf16(v[s], v[s + 2]);
    const float h0 = Bf16BitsToFloat(static_cast<uint16_t>(hi[s] & 0xFFFFu));
    const float h1 = Bf16BitsToFloat(static_cast<uint16_t>(hi[s] >> 16));
    lo[s] = PackBf16(v[s] - h0, v[s + 2] - h1);
    const float l0 = Bf16BitsToFloat(static_cast<uint16_t>(lo[s] & 0xFFFFu));
    const float l1 = Bf16BitsToFloat(static_cast<uint16_t>(lo[s] >> 16));
    *sum += (h0 + l0) + (h1 + l1);
  }
}

// Sums of the quad-partial `p` (one per x row of the n-tile, lanes 4g .. 4g + 3
// holding row g) for the rows this lane's accumulators hold: 2t and 2t + 1.
__device__ __forceinline__ void RowSums(float p, int t, float s[2]) {
  p += __shfl_xor_sync(0xffffffffu, p, 1);
  p += __shfl_xor_sync(0xffffffffu, p, 2);
  s[0] = __shfl_sync(0xffffffffu, p, 8 * t);
  s[1] = __shfl_sync(0xffffffffu, p, 8 * t + 4);
}

// kTiles = 2 (kSwiglu): tile 0 gate rows c0 .., tile 1 up rows cols + c0 ..,
// written as silu(gate) * up. kNt n-tiles of 8 x rows (m <= 8 kNt).
template <DType kW, int kNt, bool kSwiglu>
__global__ void __launch_bounds__(kWarps * 32)
    SkinnyMmaKernel(const float* __restrict__ x, const void* __restrict__ w,
                    const float* __restrict__ bias, float* __restrict__ y, int m, int n, int k,
                    int64_t x_stride, int64_t y_stride, bool vec, L2Prefetch prefetch) {
  constexpr int kTiles = kSwiglu ? 2 : 1;
  constexpr bool kQ4 = kW == DType::kQ4_0 || kW == DType::kQ4_1;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int cols = kSwiglu ? n / 2 : n;
  const int c0 = blockIdx.x * kTileRows;
  const int blocks = k / 32;
  AllowDependents();
  PrefetchShareL2(prefetch, blockIdx.x, gridDim.x);  // another kernel's weights (fixed)

  float acc[kTiles][kNt][4];
#pragma unroll
  for (int tile = 0; tile < kTiles; ++tile)
#pragma unroll
    for (int j = 0; j < kNt; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[tile][j][i] = 0.0f;

  for (int b0 = warp * kSpan; b0 < blocks; b0 += kWarps * kSpan) {
    // The run's weights first: kSpan blocks of every tile in flight at once.
    RowRun<kW> run[kTiles][2];  // rows g and g + 8 of each tile
#pragma unroll
    for (int tile = 0; tile < kTiles; ++tile)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int col = c0 + g + 8 * r;
        LoadRun<kW>(w, n, k, tile * cols + col, col < cols, b0, blocks, t, &run[tile][r]);
      }
    // Weights are fixed: the first run loads before the wait for the kernel
    // that writes x (launch.cuh); later waits return at once.
    WaitForPrimary();
#pragma unroll 1
    for (int s = 0; s < kSpan; ++s) {
      if (b0 + s >= blocks) break;  // the same for the whole warp
      uint32_t a[kTiles][2][4];
#pragma unroll
      for (int tile = 0; tile < kTiles; ++tile)
#pragma unroll
        for (int h = 0; h < 2; ++h) FragmentA<kW>(run[tile], h, a[tile][h]);
#pragma unroll
      for (int j = 0; j < kNt; ++j) {
        uint32_t hi[2][2], lo[2][2];
        float part = 0.0f;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          FragmentB(x, x_stride, vec, 8 * j + g, m, 32 * (b0 + s) + 16 * h + 4 * t, hi[h], lo[h],
                    &part);
        }
        float sums[2] = {0.0f, 0.0f};
        if constexpr (kQ4) RowSums(part, t, sums);
#pragma unroll
        for (int tile = 0; tile < kTiles; ++tile) {
          if constexpr (kW == DType::kBF16) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              MmaBf16(acc[tile][j], a[tile][h], hi[h][0], hi[h][1]);
              MmaBf16(acc[tile][j], a[tile][h], lo[h][0], lo[h][1]);
            }
          } else {
            float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              MmaBf16(p, a[tile][h], hi[h][0], hi[h][1]);
              MmaBf16(p, a[tile][h], lo[h][0], lo[h][1]);
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) {  // i: row g + 8 (i / 2), x row 2t + i % 2
              const float d = run[tile][i / 2].d[0], sum = sums[i % 2];
              if constexpr (kW == DType::kQ4_1) {
                acc[tile][j][i] += d * (p[i] - 16.0f * sum) + run[tile][i / 2].m[0] * sum;
              } else if constexpr (kW == DType::kQ4_0) {
                acc[tile][j][i] += d * (p[i] - 24.0f * sum);
              } else {
                acc[tile][j][i] += d * p[i];
              }
            }
          }
        }
      }
#pragma unroll
      for (int tile = 0; tile < kTiles; ++tile) {
        run[tile][0].Shift();
        run[tile][1].Shift();
      }
    }
  }

  WaitForPrimary();  // warps without a run never waited
  // Warps' partial sums, added pairwise in a fixed order: 4..7 onto 0..3,
  // 2..3 onto 0..1, 1 onto 0.
  constexpr int kValues = kTiles * kNt * 4;
  float* red = DynamicSharedMemory<float>();  // (kWarps / 2) x kValues x 32
  for (int half = kWarps / 2; half >= 1; half /= 2) {
    if (warp >= half && warp < 2 * half) {
      float* out = red + (warp - half) * kValues * 32 + lane;
#pragma unroll
      for (int tile = 0; tile < kTiles; ++tile)
#pragma unroll
        for (int j = 0; j < kNt; ++j)
#pragma unroll
          for (int i = 0; i < 4; ++i) out[((tile * kNt + j) * 4 + i) * 32] = acc[tile][j][i];
    }
    __syncthreads();
    if (warp < half) {
      const float* in = red + warp * kValues * 32 + lane;
#pragma unroll
      for (int tile = 0; tile < kTiles; ++tile)
#pragma unroll
        for (int j = 0; j < kNt; ++j)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[tile][j][i] += in[((tile * kNt + j) * 4 + i) * 32];
    }
    __syncthreads();
  }
  if (warp != 0) return;
#pragma unroll
  for (int j = 0; j < kNt; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int col = c0 + g + 8 * (i / 2), row = 8 * j + 2 * t + i % 2;
      if (col >= cols || row >= m) continue;
      const float b = bias != nullptr ? __ldg(bias + col) : 0.0f;
      if constexpr (kSwiglu) {
        const float bu = bias != nullptr ? __ldg(bias + col + cols) : 0.0f;
        y[row * y_stride + col] = SiluMul(acc[0][j][i] + b, acc[kTiles - 1][j][i] + bu);
      } else {
        y[row * y_stride + col] = acc[0][j][i] + b;
      }
    }
}

template <DType kW, int kNt, bool kSwiglu>
absl::Status Launch(const GemmParams& p, int64_t x_stride, int64_t y_stride,
                    const LaunchStream& stream, const L2Prefetch& prefetch) {
  constexpr int kTiles = kSwiglu ? 2 : 1;
  constexpr size_t kShared = sizeof(float) * (kWarps / 2) * kTiles * kNt * 4 * 32;
  static_assert(kShared <= 48 * 1024, "no dynamic shared-memory opt-in needed");
  const int cols = kSwiglu ? p.n / 2 : p.n;
  const bool vec = reinterpret_cast<uintptr_t>(p.x) % 16 == 0 && x_stride % 4 == 0;
  LaunchKernel("SkinnyMmaKernel", SkinnyMmaKernel<kW, kNt, kSwiglu>,
               (cols + kTileRows - 1) / kTileRows, kWarps * 32, kShared, stream, p.x, p.w, p.bias,
               p.y, p.m, p.n, p.k, x_stride, y_stride, vec, prefetch);
  return LaunchStatus("SkinnyMmaKernel");
}

template <DType kW, bool kSwiglu>
absl::Status LaunchForRows(const GemmParams& p, int64_t x_stride, int64_t y_stride,
                           const LaunchStream& stream, const L2Prefetch& prefetch) {
  if (p.m <= 8) return Launch<kW, 1, kSwiglu>(p, x_stride, y_stride, stream, prefetch);
  if (p.m <= 16) return Launch<kW, 2, kSwiglu>(p, x_stride, y_stride, stream, prefetch);
  if (p.m <= 32) return Launch<kW, 4, kSwiglu>(p, x_stride, y_stride, stream, prefetch);
  return Launch<kW, 8, kSwiglu>(p, x_stride, y_stride, stream, prefetch);
}

template <bool kSwiglu>
absl::Status LaunchForType(const GemmParams& p, int64_t x_stride, int64_t y_stride,
                           const LaunchStream& stream, const L2Prefetch& prefetch) {
  switch (p.w_dtype) {
    case DType::kBF16:
      return LaunchForRows<DType::kBF16, kSwiglu>(p, x_stride, y_stride, stream, prefetch);
    case DType::kQ8_0:
      return LaunchForRows<DType::kQ8_0, kSwiglu>(p, x_stride, y_stride, stream, prefetch);
    case DType::kQ4_0:
      return LaunchForRows<DType::kQ4_0, kSwiglu>(p, x_stride, y_stride, stream, prefetch);
    case DType::kQ4_1:
      return LaunchForRows<DType::kQ4_1, kSwiglu>(p, x_stride, y_stride, stream, prefetch);
    default:
      return absl::InternalError("SkinnyMma: unsupported weight type");
  }
}

}  // namespace

bool SkinnyMmaSupports(const GemmParams& p) {
  if (p.m < 2 || p.m > kSkinnyGemmMaxRows || p.k % 32 != 0 || p.y == nullptr) return false;
  switch (p.w_dtype) {
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ4_1:
      return true;
    case DType::kBF16:  // rows read in 8-byte pieces
      return reinterpret_cast<uintptr_t>(p.w) % 8 == 0;
    default:
      return false;
  }
}

absl::Status LaunchSkinnyMma(const GemmParams& p, bool swiglu, int64_t x_stride, int64_t y_stride,
                             const LaunchStream& stream, const L2Prefetch& prefetch) {
  return swiglu ? LaunchForType<true>(p, x_stride, y_stride, stream, prefetch)
                : LaunchForType<false>(p, x_stride, y_stride, stream, prefetch);
}

}  // namespace tpserve::kernels::cuda
