// cuda::GemmBf16: tensor-core GEMM c = a . b^T (bf16 in, f32 accumulate/out)
// with mma.sync m16n8k16 (sm_80 and later).
//
// Block tile kBM x kBN x kBK, 8 warps as 2 (M) x 4 (N), each warp 64 x 32 =
// 4 x 4 mma tiles. A kStages-deep cp.async pipeline fills shared memory while
// the previous tiles are multiplied. Shared rows are padded from 32 to 40 bf16
// (80 bytes): the 8 row addresses of an ldmatrix then fall in 8 distinct
// 16-byte bank groups (80 = 5 x 16 and 5 is odd), with no swizzle to get wrong.
// Edges are zero-filled by cp.async (k % 8 == 0 keeps every 16-byte chunk
// either fully inside or fully outside the matrix).
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/mma_sm80.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kBM = 128;
constexpr int kBN = 128;
constexpr int kBK = 32;
constexpr int kStages = 3;
constexpr int kWarpsM = 2;
constexpr int kWarpsN = 4;
constexpr int kThreads = kWarpsM * kWarpsN * 32;
constexpr int kWarpM = kBM / kWarpsM;  // 64
constexpr int kWarpN = kBN / kWarpsN;  // 32
constexpr int kMTiles = kWarpM / 16;   // mma tiles per warp along M
constexpr int kNTiles = kWarpN / 8;    // along N
constexpr int kLds = kBK + 8;          // padded shared row, in bf16
constexpr int kChunksPerRow = kBK / 8;  // 16-byte chunks per tile row
constexpr int kStageElems = (kBM + kBN) * kLds;
constexpr size_t kSharedBytes = sizeof(uint16_t) * kStageElems * kStages;

static_assert(kBK % 16 == 0, "k tile is a whole number of mma k-steps");
static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0, "warp tile is whole mma tiles (B loads 16 columns at a time)");
static_assert((kLds * sizeof(uint16_t)) % 16 == 0, "padded rows keep 16-byte alignment for cp.async/ldmatrix");
static_assert(((kLds * sizeof(uint16_t)) / 16) % 2 == 1, "odd 16-byte row stride makes ldmatrix conflict-free");
static_assert((kBM * kChunksPerRow) % kThreads == 0 && (kBN * kChunksPerRow) % kThreads == 0,
              "tile loads split evenly over the block");
static_assert(kStages >= 2, "pipeline needs at least double buffering");

// Copies rows [row0, row0 + kRows) x k-chunk [k0, k0 + kBK) of a (rows, k)
// matrix into a padded shared tile.
template <int kRows>
__device__ __forceinline__ void LoadTile(uint16_t* tile, const uint16_t* g, int rows, int k, int row0, int k0) {
#pragma unroll
  for (int c = threadIdx.x; c < kRows * kChunksPerRow; c += kThreads) {
    const int r = c / kChunksPerRow;
    const int kc = (c % kChunksPerRow) * 8;
    const int gr = row0 + r;
    const int gk = k0 + kc;
    const bool valid = gr < rows && gk < k;
    const uint16_t* src = valid ? g + static_cast<int64_t>(gr) * k + gk : g;
    CpAsync16(tile + r * kLds + kc, src, valid);
  }
}

__global__ void __launch_bounds__(kThreads) GemmBf16Kernel(const uint16_t* __restrict__ a, const uint16_t* __restrict__ b,
                                                          const float* __restrict__ bias, float* __restrict__ c,
                                                          int m, int n, int k, int64_t c_stride) {
  extern __shared__ __align__(16) uint16_t smem[];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warp_m = warp / kWarpsN;
  const int warp_n = warp % kWarpsN;
  const int m0 = blockIdx.y * kBM;
  const int n0 = blockIdx.x * kBN;
  const int ktiles = (k + kBK - 1) / kBK;

  auto stage_a = [&](int s) { return smem + s * kStageElems; };
  auto stage_b = [&](int s) { return smem + s * kStageElems + kBM * kLds; };

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
      LoadTile<kBM>(stage_a(s), a, m, k, m0, s * kBK);
      LoadTile<kBN>(stage_b(s), b, n, k, n0, s * kBK);
    }
    CpAsyncCommit();
  }

  for (int kt = 0; kt < ktiles; ++kt) {
    CpAsyncWait<kStages - 2>();  // tile kt has landed (for this thread)
    __syncthreads();             // ... for all threads; and stage (kt - 1) is free
    const int next = kt + kStages - 1;
    if (next < ktiles) {
      LoadTile<kBM>(stage_a(next % kStages), a, m, k, m0, next * kBK);
      LoadTile<kBN>(stage_b(next % kStages), b, n, k, n0, next * kBK);
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
        if (row < m && col < n) c[row * c_stride + col] = acc[i][j][e] + (bias != nullptr ? bias[col] : 0.0f);
      }
    }
  }
}

}  // namespace

absl::Status GemmBf16(const GemmBf16Params& p, const Stream& stream) {
  if (p.m < 0 || p.n < 0 || p.k <= 0) return absl::InvalidArgumentError("GemmBf16: bad shape");
  if (p.k % 8 != 0) return absl::InvalidArgumentError("GemmBf16: k must be a multiple of 8");
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  if (p.a == nullptr || p.b == nullptr || p.c == nullptr) return absl::InvalidArgumentError("GemmBf16: null pointer");
  if ((reinterpret_cast<uintptr_t>(p.a) | reinterpret_cast<uintptr_t>(p.b)) % 16 != 0) {
    return absl::InvalidArgumentError("GemmBf16: a and b must be 16-byte aligned");
  }
  const int64_t c_stride = p.c_stride == 0 ? p.n : p.c_stride;
  if (c_stride < p.n) return absl::InvalidArgumentError("GemmBf16: c_stride below n");
  const int64_t grid_m = (p.m + kBM - 1) / kBM;
  if (grid_m > 65535) return absl::InvalidArgumentError("GemmBf16: m too large for one launch");
  TPS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(GemmBf16Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(kSharedBytes)));
  const dim3 grid((p.n + kBN - 1) / kBN, static_cast<unsigned>(grid_m));
  GemmBf16Kernel<<<grid, kThreads, kSharedBytes, static_cast<cudaStream_t>(stream.cuda_stream)>>>(
      p.a, p.b, p.bias, p.c, p.m, p.n, p.k, c_stride);
  return LaunchStatus("GemmBf16Kernel");
}

}  // namespace tpserve::kernels::cuda
