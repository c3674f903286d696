// The tensor-core GEMM kernel shared by cuda::GemmBf16 (bf16 operands copied
// with cp.async) and cuda::Gemm's prefill path (f32 activations and any
// dtype.h weight converted to bf16 on the way into shared memory):
//   c (m, n) f32 = a (m, k) . b (n, k)^T (+ bias), f32 accumulation.
//
// Block tile kBM x kBN x kBK, 8 warps as 2 (M) x 4 (N), each warp 64 x 32 =
// 4 x 4 mma.sync m16n8k16 tiles; kStages shared-memory stages. A loader is a
// policy with Fetch (issue global reads for a future stage: cp.async straight
// into shared memory, or plain loads into registers) and Store (after this
// stage's math, convert the registers and write them to shared memory), so
// converting loaders overlap their global latency with the mma work too.
// Shared rows are padded from 32 to 40 bf16 (80 bytes): the 8 row addresses
// of an ldmatrix then hit 8 distinct 16-byte bank groups (5 is odd), with no
// swizzle to get wrong.
//
//   TensorCoreGemmKernel<CpAsyncBf16Loader, CpAsyncBf16Loader>
//       <<<TensorCoreGrid(m, n), kTcThreads, kTcSharedBytes, stream>>>(args);
#ifndef TPSERVE_KERNELS_CUDA_TENSOR_CORE_GEMM_CUH_
#define TPSERVE_KERNELS_CUDA_TENSOR_CORE_GEMM_CUH_

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/mma_sm80.cuh"
#include "kernels/cuda/quant.cuh"
#include "kernels/cuda/shared_memory.cuh"

namespace tpserve::kernels::cuda {

inline constexpr int kBM = 128;
inline constexpr int kBN = 128;
inline constexpr int kBK = 32;
inline constexpr int kStages = 3;
inline constexpr int kWarpsM = 2;
inline constexpr int kWarpsN = 4;
inline constexpr int kTcThreads = kWarpsM * kWarpsN * 32;
inline constexpr int kWarpM = kBM / kWarpsM;  // 64
inline constexpr int kWarpN = kBN / kWarpsN;  // 32
inline constexpr int kMTiles = kWarpM / 16;   // mma tiles per warp along M
inline constexpr int kNTiles = kWarpN / 8;    // along N
inline constexpr int kLds = kBK + 8;          // padded shared row, in bf16
inline constexpr int kStageElems = (kBM + kBN) * kLds;
inline constexpr size_t kTcSharedBytes = sizeof(uint16_t) * kStageElems * kStages;

static_assert(kBK == 32, "converting loaders map one 32-value quant block to one tile row");
static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0,
              "warp tile is whole mma tiles (B loads 16 columns at a time)");
static_assert((kLds * sizeof(uint16_t)) % 16 == 0,
              "padded rows keep 16-byte alignment for cp.async/ldmatrix");
static_assert(((kLds * sizeof(uint16_t)) / 16) % 2 == 1,
              "odd 16-byte row stride makes ldmatrix conflict-free");
static_assert(kBM == kBN && kBM * 2 == kTcThreads,
              "converting loaders give each thread half a row of one tile");
static_assert(kStages >= 2, "pipeline needs at least double buffering");

// Operand description: rows of `cols` values; row r at base + r * row_stride
// elements (bf16 / f32 operands, plain weights); quantized weights are in
// the device layout of weight_layout.h (row_stride unused).
struct TcOperand {
  const void* base;
  int rows;
  int64_t row_stride;
};

struct TcArgs {
  TcOperand a;        // (m, k)
  TcOperand b;        // (n, k)
  const float* bias;  // (n) or null
  float* c;           // (m, n), row stride c_stride
  int m, n, k;
  int64_t c_stride;
};

// ---- Loaders. Each handles one (kBM or kBN) x kBK tile of its operand.

// bf16 operand, k % 8 == 0, 16-byte aligned rows: cp.async, zero-filled edges.
struct CpAsyncBf16Loader {
  __device__ void Fetch(uint16_t* tile, const TcOperand& op, int k, int row0, int k0) {
    constexpr int kChunksPerRow = kBK / 8;
#pragma unroll
    for (int c = threadIdx.x; c < kBM * kChunksPerRow; c += kTcThreads) {
      const int r = c / kChunksPerRow;
      const int kc = (c % kChunksPerRow) * 8;
      const bool valid = row0 + r < op.rows && k0 + kc < k;
      const uint16_t* g = static_cast<const uint16_t*>(op.base);
      const uint16_t* src = valid ? g + (row0 + r) * op.row_stride + k0 + kc : g;
      CpAsync16(tile + r * kLds + kc, src, valid);
    }
  }
  __device__ void Store(uint16_t*) {}
};

// Writes 16 values as bf16 to tile row r, columns half * 16 ... + 15.
__device__ __forceinline__ void StoreHalfRow(uint16_t* tile, int r, int half, const float v[16]) {
  uint4 lo, hi;
  lo.x = PackBf16(v[0], v[1]);
  lo.y = PackBf16(v[2], v[3]);
  lo.z = PackBf16(v[4], v[5]);
  lo.w = PackBf16(v[6], v[7]);
  hi.x = PackBf16(v[8], v[9]);
  hi.y = PackBf16(v[10], v[11]);
  hi.z = PackBf16(v[12], v[13]);
  hi.w = PackBf16(v[14], v[15]);
  uint4* dst = reinterpret_cast<uint4*>(tile + r * kLds + half * 16);
  dst[0] = lo;
  dst[1] = hi;
}

// Any dtype.h type, converted to bf16. Thread t owns tile row t / 2 and the
// half (t % 2) of its 32 columns. Quantized rows need k % 32 == 0 (one block
// per tile row); plain rows take any k (the tail is zero-filled).
template <DType kType>
struct ConvertLoader {
  static constexpr bool kQuant = IsQuantized(kType);
  // Raw registers: 16 values (f32 bits or 16-bit values) or a half block.
  uint32_t raw[16];
  uint16_t d = 0, m = 0;
  bool valid = false;

  __device__ void Fetch(uint16_t*, const TcOperand& op, int k, int row0, int k0) {
    const int r = threadIdx.x >> 1;
    const int half = threadIdx.x & 1;
    const int row = row0 + r;
    valid = row < op.rows;
    if (!valid) return;
    if constexpr (kQuant) {
      // The device layout (weight_layout.h): scales and qs in separate planes.
      const PackedQuantRows w = PackedRows<kType>(op.base, op.rows, k);
      const int64_t block = row * w.blocks_per_row + k0 / 32;
      const uint16_t* s =
          reinterpret_cast<const uint16_t*>(w.scales + block * ScaleBytesPerBlock(kType));
      d = __ldg(s);
      if constexpr (kType == DType::kQ4_1) m = __ldg(s + 1);
      // Q8_0: bytes half*16 .. +15 of qs; Q4_x: all 16 qs bytes (the half picks the nibble).
      const uint4 q = __ldg(w.quants + (kType == DType::kQ8_0 ? 2 * block + half : block));
      const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
      for (int i = 0; i < 8; ++i) raw[i] = (words[i / 2] >> (16 * (i % 2))) & 0xFFFFu;
    } else {
      const int64_t base = static_cast<int64_t>(row) * op.row_stride;
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const int col = k0 + half * 16 + i;
        if (col >= k) {
          raw[i] = 0;  // zero in every plain type
        } else if constexpr (kType == DType::kF32) {
          raw[i] = __float_as_uint(__ldg(static_cast<const float*>(op.base) + base + col));
        } else {
          raw[i] = __ldg(static_cast<const uint16_t*>(op.base) + base + col);
        }
      }
    }
  }

  __device__ void Store(uint16_t* tile) {
    const int r = threadIdx.x >> 1;
    const int half = threadIdx.x & 1;
    float v[16];
    if (!valid) {
#pragma unroll
      for (int i = 0; i < 16; ++i) v[i] = 0.0f;
    } else if constexpr (kType == DType::kF32) {
#pragma unroll
      for (int i = 0; i < 16; ++i) v[i] = __uint_as_float(raw[i]);
    } else if constexpr (kType == DType::kF16) {
#pragma unroll
      for (int i = 0; i < 16; ++i) v[i] = HalfBitsToFloat(static_cast<uint16_t>(raw[i]));
    } else if constexpr (kType == DType::kBF16) {
#pragma unroll
      for (int i = 0; i < 16; ++i) v[i] = Bf16BitsToFloat(static_cast<uint16_t>(raw[i]));
    } else {
      const float scale = HalfBitsToFloat(d);
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int b0 = raw[i] & 0xFF;  // qs[2i] (Q8_0: of this half)
        const int b1 = raw[i] >> 8;    // qs[2i + 1]
        if constexpr (kType == DType::kQ8_0) {
          v[2 * i] = scale * static_cast<float>(static_cast<int8_t>(b0));
          v[2 * i + 1] = scale * static_cast<float>(static_cast<int8_t>(b1));
        } else {
          // Value j of half 0 is qs[j]'s low nibble; of half 1, its high nibble.
          const int n0 = half == 0 ? (b0 & 0xF) : (b0 >> 4);
          const int n1 = half == 0 ? (b1 & 0xF) : (b1 >> 4);
          if constexpr (kType == DType::kQ4_0) {
            v[2 * i] = scale * static_cast<float>(n0 - 8);
            v[2 * i + 1] = scale * static_cast<float>(n1 - 8);
          } else {
            const float mn = HalfBitsToFloat(m);
            v[2 * i] = __fadd_rn(__fmul_rn(scale, static_cast<float>(n0)), mn);
            v[2 * i + 1] = __fadd_rn(__fmul_rn(scale, static_cast<float>(n1)), mn);
          }
        }
      }
    }
    StoreHalfRow(tile, r, half, v);
  }
};

template <class ALoader, class BLoader>
__global__ void __launch_bounds__(kTcThreads) TensorCoreGemmKernel(TcArgs args) {
  uint16_t* smem = DynamicSharedMemory<uint16_t>();
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warp_m = warp / kWarpsN;
  const int warp_n = warp % kWarpsN;
  const int m0 = blockIdx.y * kBM;
  const int n0 = blockIdx.x * kBN;
  const int ktiles = (args.k + kBK - 1) / kBK;
  auto stage_a = [&](int s) { return smem + s * kStageElems; };
  auto stage_b = [&](int s) { return smem + s * kStageElems + kBM * kLds; };
  ALoader la;
  BLoader lb;

  float acc[kMTiles][kNTiles][4];
#pragma unroll
  for (int i = 0; i < kMTiles; ++i)
#pragma unroll
    for (int j = 0; j < kNTiles; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < ktiles) {
      la.Fetch(stage_a(s), args.a, args.k, m0, s * kBK);
      lb.Fetch(stage_b(s), args.b, args.k, n0, s * kBK);
      la.Store(stage_a(s));
      lb.Store(stage_b(s));
    }
    CpAsyncCommit();
  }

  for (int kt = 0; kt < ktiles; ++kt) {
    CpAsyncWait<kStages - 2>();  // tile kt's cp.async groups have landed (this thread)
    __syncthreads();             // ... and every thread's stores; stage (kt - 1) is free
    const int next = kt + kStages - 1;
    const bool fetch = next < ktiles;
    if (fetch) {
      la.Fetch(stage_a(next % kStages), args.a, args.k, m0, next * kBK);
      lb.Fetch(stage_b(next % kStages), args.b, args.k, n0, next * kBK);
    }
    CpAsyncCommit();  // possibly empty: keeps the group count in step with kt

    const uint16_t* sa = stage_a(kt % kStages);
    const uint16_t* sb = stage_b(kt % kStages);
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      uint32_t af[kMTiles][4];
      uint32_t bf[kNTiles][2];
#pragma unroll
      for (int i = 0; i < kMTiles; ++i) {
        // Matrices: rows 0-7 / 8-15 (lane % 16) at k 0-7 / 8-15 (lane / 16).
        const int row = warp_m * kWarpM + i * 16 + (lane % 16);
        LdMatrixX4(sa + row * kLds + kk + (lane / 16) * 8, af[i]);
      }
#pragma unroll
      for (int j = 0; j < kNTiles; j += 2) {
        // Matrices: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
        const int row = warp_n * kWarpN + j * 8 + (lane % 8) + (lane / 16) * 8;
        uint32_t r[4];
        LdMatrixX4(sb + row * kLds + kk + ((lane / 8) % 2) * 8, r);
        bf[j][0] = r[0];
        bf[j][1] = r[1];
        bf[j + 1][0] = r[2];
        bf[j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < kMTiles; ++i)
#pragma unroll
        for (int j = 0; j < kNTiles; ++j) MmaBf16(acc[i][j], af[i], bf[j][0], bf[j][1]);
    }
    // Converting loaders write the stage fetched above; it was last read in
    // iteration kt - 1, which every thread finished before this iteration's barrier.
    if (fetch) {
      la.Store(stage_a(next % kStages));
      lb.Store(stage_b(next % kStages));
    }
  }
  CpAsyncWait<0>();

  // Accumulator fragment: (row lane/4, cols 2*(lane%4) + {0,1}) and row + 8.
#pragma unroll
  for (int i = 0; i < kMTiles; ++i) {
#pragma unroll
    for (int j = 0; j < kNTiles; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = m0 + warp_m * kWarpM + i * 16 + lane / 4 + (e / 2) * 8;
        const int col = n0 + warp_n * kWarpN + j * 8 + (lane % 4) * 2 + (e % 2);
        if (row < args.m && col < args.n) {
          args.c[row * args.c_stride + col] =
              acc[i][j][e] + (args.bias != nullptr ? args.bias[col] : 0.0f);
        }
      }
    }
  }
}

inline dim3 TensorCoreGrid(int m, int n) { return dim3((n + kBN - 1) / kBN, (m + kBM - 1) / kBM); }

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_TENSOR_CORE_GEMM_CUH_
