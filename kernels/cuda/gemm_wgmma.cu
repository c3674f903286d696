// cuda::GemmBf16Wgmma: an sm_90a (Hopper) tensor-core GEMM on bf16 operands
// with wgmma.mma_async reading both operands from shared memory through
// matrix descriptors: c (m, n) f32 = a (m, k) bf16 . b (n, k)^T bf16.
//
// EXPERIMENTAL: not on the engine's path. The first version (one warpgroup,
// 64 x 128 tiles, each k tile's wgmmas waited for right after their commit)
// passed gemm_wgmma_test on an H100 (2026-12-05) at 0.20-0.79 of cuBLAS.
// This one has not run on a GPU; gemm_wgmma_test_emu checks it under the
// emulator's wgmma (kernels/cuda/emu/wgmma_sm90_emu.h).
//
// Two warpgroups (256 threads) per 128 x kBn output tile (kBn = 256, or 128
// when 256-wide tiles would leave SMs idle), each warpgroup 64 rows of it.
// A kStages-deep cp.async pipeline of 64-wide k tiles stored K-major in the
// 128-byte swizzle (16-byte chunk c of row r at chunk c ^ (r % 8), 8-row
// atoms of 1024 bytes); per k tile, each warpgroup issues 4 k16 steps of
// kBn / 128 m64n128k16 wgmmas, commits them and waits for the previous k
// tile's only, so one k tile's wgmmas run while the next is issued. Loads
// run kStages - 2 tiles ahead: the stage they refill was read by the k tile
// two back, retired before the barrier that precedes them. cp.async writes
// go through the generic proxy, so a fence.proxy.async orders them before
// wgmma's async-proxy reads.
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/quant.cuh"
#include "kernels/cuda/shared_memory.cuh"
#include "kernels/cuda/tma.h"
#include "kernels/cuda/tma_sm90.cuh"
#include "kernels/cuda/wgmma_sm90.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kWgThreads = 256;  // two warpgroups
constexpr int kWgM = 128;
constexpr int kWgK = 64;  // one 128-byte swizzled row of bf16
static_assert(kWgK * 2 == 128, "a k tile row is exactly one 128-byte swizzle row");

// The parameters of a kernel body compiled out for an architecture.
template <class... T>
__device__ __forceinline__ void Unused(const T&...) {}

template <int kBn>
struct WgTile {
  static constexpr int kATileBytes = kWgM * kWgK * 2;  // 16 KiB
  static constexpr int kBTileBytes = kBn * kWgK * 2;   // 32 or 16 KiB
  static constexpr int kStageBytes = kATileBytes + kBTileBytes;
  static constexpr int kStages = kBn == 256 ? 4 : 6;
  static constexpr size_t kSharedBytes =
      static_cast<size_t>(kStageBytes) * kStages + 1024;  // + alignment slack
  static_assert(kBn % 128 == 0, "tiles are whole m64n128 wgmmas");
  static_assert(kATileBytes % 1024 == 0 && kBTileBytes % 1024 == 0,
                "tiles keep 1024-byte swizzle-atom alignment");
  static_assert(kSharedBytes <= 232448, "an H100's opt-in shared memory per block");
};

// Where GemmWgmmaKernel's B tiles come from: bf16 rows (B = the rows,
// copied by cp.async with each A tile), or Q8_0 / Q4_0 / Q4_1 weights
// dequantised by the kernel's threads one k tile ahead (QuantStage).
struct BRows {
  static constexpr bool kAsync = true;
  static constexpr DType kType = DType::kBF16;
  const uint16_t* b;
};
template <DType kW>
struct BQuant {
  static_assert(kW == DType::kQ8_0 || kW == DType::kQ4_0 || kW == DType::kQ4_1, "quant blocks");
  static constexpr bool kAsync = false;
  static constexpr DType kType = kW;
  const void* w;
};
// A quantized type for QuantStage whatever the source (BRows never uses its stage).
template <class BSource>
constexpr DType QuantType() {
  return IsQuantized(BSource::kType) ? BSource::kType : DType::kQ4_1;
}

#if TPS_WGMMA_AVAILABLE
// Rows [row0, row0 + kRows) x k [k0, k0 + 64) into the swizzled tile; rows
// and k past the matrix are zeros.
template <int kRows>
__device__ __forceinline__ void LoadSwizzled(char* tile, const uint16_t* g, int rows, int k,
                                             int row0, int k0) {
#pragma unroll
  for (int c = threadIdx.x; c < kRows * 8; c += kWgThreads) {
    const int r = c / 8;
    const int chunk = c % 8;
    const int gk = k0 + chunk * 8;
    const bool valid = row0 + r < rows && gk < k;
    const uint16_t* src = valid ? g + static_cast<int64_t>(row0 + r) * k + gk : g;
    CpAsync16(tile + r * 128 + ((chunk ^ (r & 7)) << 4), src, valid);
  }
}

template <int kBn>
__device__ __forceinline__ void ZeroAccumulators(float (&d)[kBn / 128][64]) {
#pragma unroll
  for (int h = 0; h < kBn / 128; ++h) {
#pragma unroll
    for (int i = 0; i < 64; ++i) d[h][i] = 0.0f;
  }
}

// One 64-wide k stage of this warpgroup's 64 rows: A's rows at shared address
// sa, B's kBn rows at sb (both swizzled K-major), 4 k16 steps of kBn / 128
// m64n128k16 wgmmas, committed as one group.
template <int kBn>
__device__ __forceinline__ void IssueStage(float (&d)[kBn / 128][64], uint32_t sa, uint32_t sb) {
  WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < kWgK / 16; ++kk) {
#pragma unroll
    for (int h = 0; h < kBn / 128; ++h) {
      WgmmaBf16N128(d[h], WgmmaDescriptorSw128(sa + kk * 32),
                    WgmmaDescriptorSw128(sb + h * 128 * 128 + kk * 32));
    }
  }
  WgmmaCommit();
}

// A warpgroup's 64 x kBn accumulators (the m64nNk16 fragment, wgmma_sm90.cuh)
// plus bias into c at rows row0.., columns n0..; outside (m, n) dropped.
template <int kBn>
__device__ __forceinline__ void StoreWgmmaTile(const float (&d)[kBn / 128][64], const float* bias,
                                               float* c, int m, int n, int64_t c_stride, int row0,
                                               int n0) {
  const int warp = (threadIdx.x / 32) % 4;
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int h = 0; h < kBn / 128; ++h) {
#pragma unroll
    for (int j = 0; j < 16; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = row0 + warp * 16 + lane / 4 + (e / 2) * 8;
        const int col = n0 + h * 128 + j * 8 + (lane % 4) * 2 + (e % 2);
        if (row < m && col < n)
          c[row * c_stride + col] = d[h][j * 4 + e] + (bias != nullptr ? bias[col] : 0.0f);
      }
    }
  }
}

// Q8_0 / Q4_0 / Q4_1 weights (device layout, weight_layout.h) into B
// tiles: each thread holds kItems (row, quant block) pairs of a k tile in
// registers (Fetch) and later stores them dequantised and swizzled (Store),
// with ConvertRows's arithmetic and rounding, so a tile holds GemmViaBf16's
// bf16 copy bit for bit. Rows past n and blocks past k store zeros.
// kThreads threads share a stage; t is this thread's index among them.
template <DType kW, int kBn, int kThreads>
struct QuantStage {
  static constexpr int kItems = kBn * 2 / kThreads;  // two blocks per 64-wide row
  static_assert(kItems >= 1 && kBn * 2 % kThreads == 0, "whole items per thread");
  static constexpr int kChunks = QuantBytesPerBlock(kW) / 16;  // 16-byte quant chunks per block
  uint4 q[kItems][kChunks];
  uint32_t scales[kItems];  // f16 d, and f16 m above it for Q4_1
  bool valid[kItems];

  __device__ __forceinline__ void Fetch(const void* w, int n, int k, int n0, int kt, int t) {
    const PackedQuantRows p = PackedRows<kW>(w, n, k);
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int item = t + i * kThreads;
      const int row = n0 + item / 2;
      const int64_t b = static_cast<int64_t>(kt) * 2 + item % 2;
      valid[i] = row < n && b < p.blocks_per_row;
      if (!valid[i]) continue;
      const int64_t block = row * p.blocks_per_row + b;
#pragma unroll
      for (int j = 0; j < kChunks; ++j) q[i][j] = __ldg(p.quants + block * kChunks + j);
      scales[i] = kW == DType::kQ4_1 ? __ldg(reinterpret_cast<const uint32_t*>(p.scales) + block)
                                     : __ldg(reinterpret_cast<const uint16_t*>(p.scales) + block);
    }
  }

  __device__ __forceinline__ void Store(char* tile, int t) const {
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int item = t + i * kThreads;
      const int r = item / 2;
      const float d = HalfBitsToFloat(static_cast<uint16_t>(scales[i] & 0xFFFFu));
      const float mn = HalfBitsToFloat(static_cast<uint16_t>(scales[i] >> 16));
      uint32_t words[4 * kChunks];
#pragma unroll
      for (int j = 0; j < kChunks; ++j) {
        words[4 * j] = q[i][j].x;
        words[4 * j + 1] = q[i][j].y;
        words[4 * j + 2] = q[i][j].z;
        words[4 * j + 3] = q[i][j].w;
      }
      // 16-byte chunk c of the block's 32 bf16 values: values 8c .. 8c + 7.
      // Q8_0: bytes 8c .. 8c + 7 (int8). Q4: the low nibbles of bytes
      // 8 (c % 2) .. + 7 for c < 2, else their high nibbles (byte j holds
      // value j low, value j + 16 high).
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        uint32_t packed[4] = {0, 0, 0, 0};
        if (valid[i]) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            float pair[2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const int byte_index = (kW == DType::kQ8_0 ? c * 8 : (c % 2) * 8) + 2 * e + h;
              const int byte =
                  static_cast<int>((words[byte_index / 4] >> (8 * (byte_index % 4))) & 0xFFu);
              const int nibble = c < 2 ? (byte & 0xF) : (byte >> 4);
              if constexpr (kW == DType::kQ8_0) {
                pair[h] = __fmul_rn(d, static_cast<float>(static_cast<int8_t>(byte)));
              } else if constexpr (kW == DType::kQ4_1) {
                pair[h] = __fadd_rn(__fmul_rn(d, static_cast<float>(nibble)), mn);
              } else {
                pair[h] = __fmul_rn(d, static_cast<float>(nibble - 8));
              }
            }
            packed[e] = PackBf16(pair[0], pair[1]);
          }
        }
        const int chunk = (item % 2) * 4 + c;  // of the tile's 128-byte row
        *reinterpret_cast<uint4*>(tile + r * 128 + ((chunk ^ (r & 7)) << 4)) =
            uint4{packed[0], packed[1], packed[2], packed[3]};
      }
    }
  }
};
#endif

template <int kBn, class BSource>
__global__ void __launch_bounds__(kWgThreads, 1)
    GemmWgmmaKernel(const uint16_t* __restrict__ a, const BSource bsrc,
                    const float* __restrict__ bias, float* __restrict__ c, int m, int n, int k,
                    int64_t c_stride) {
#if TPS_WGMMA_AVAILABLE
  using T = WgTile<kBn>;
  constexpr int kAhead = T::kStages - 2;  // k tiles loaded ahead of the one multiplied
  char* smem_raw = DynamicSharedMemory<char>();
  char* smem =
      reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t{1023});
  const int m0 = blockIdx.y * kWgM;
  const int n0 = blockIdx.x * kBn;
  const int ktiles = (k + kWgK - 1) / kWgK;
  const int group = threadIdx.x / 128;  // this warpgroup's rows: 64 * group ..
  auto tile_a = [&](int s) { return smem + s * T::kStageBytes; };
  auto tile_b = [&](int s) { return smem + s * T::kStageBytes + T::kATileBytes; };
  auto load = [&](int kt) {
    LoadSwizzled<kWgM>(tile_a(kt % T::kStages), a, m, k, m0, kt * kWgK);
    if constexpr (BSource::kAsync) {
      LoadSwizzled<kBn>(tile_b(kt % T::kStages), bsrc.b, n, k, n0, kt * kWgK);
    }
  };

  float d[kBn / 128][64];
  ZeroAccumulators<kBn>(d);

#pragma unroll
  for (int s = 0; s < kAhead; ++s) {
    if (s < ktiles) load(s);
    CpAsyncCommit();
  }
  // Dequantised B: tile 0 stored, tile 1 in registers.
  const int t = threadIdx.x;
  [[maybe_unused]] QuantStage<QuantType<BSource>(), kBn, kWgThreads> staged;
  if constexpr (!BSource::kAsync) {
    if (ktiles > 0) {
      staged.Fetch(bsrc.w, n, k, n0, 0, t);
      staged.Store(tile_b(0), t);
    }
    if (ktiles > 1) staged.Fetch(bsrc.w, n, k, n0, 1, t);
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    CpAsyncWait<kAhead - 1>();  // this thread's copies of tile kt have landed
    FenceProxyAsyncShared();
    // Every thread's copies of tile kt are visible, and every warpgroup has
    // retired tile kt - 2's wgmmas: its stage is free for tile kt + kAhead.
    __syncthreads();
    if (kt + kAhead < ktiles) load(kt + kAhead);
    CpAsyncCommit();
    IssueStage<kBn>(d, SharedAddress(tile_a(kt % T::kStages)) + group * 64 * 128,
                    SharedAddress(tile_b(kt % T::kStages)));
    if constexpr (!BSource::kAsync) {
      // Tile kt + 1's B into its stage (last read by tile kt + 1 - kStages,
      // retired before the barrier above), tile kt + 2's into registers.
      if (kt + 1 < ktiles) staged.Store(tile_b((kt + 1) % T::kStages), t);
      if (kt + 2 < ktiles) staged.Fetch(bsrc.w, n, k, n0, kt + 2, t);
    }
    WgmmaWait<1>();  // tile kt - 1's wgmmas are done; tile kt's run on
  }
  WgmmaWait<0>();
  CpAsyncWait<0>();

  StoreWgmmaTile<kBn>(d, bias, c, m, n, c_stride, m0 + group * 64, n0);
#else
  // Built for an architecture without wgmma: the host never launches this.
  Unused(a, bsrc, bool{BSource::kAsync}, DType{BSource::kType}, bias, c, m, n, k, c_stride);
#endif
}

// The warp-specialised version (GemmBf16WgmmaTma): warpgroup 0 produces,
// warpgroups 1 and 2 consume, on the same 128 x kBn tiles and 64-wide k
// stages in the same swizzle. One producer thread loads each stage with two
// TMA tile copies (A's 128 rows, B's kBn rows; rows and k past the matrix
// land as zeros) that complete on the stage's `full` mbarrier; it reuses a
// stage once its `empty` mbarrier has all 256 consumer threads' arrivals.
// A consumer waits for `full`, issues the stage's wgmmas, and after
// wgmma.wait_group 1 (the previous stage's wgmmas retired) arrives on the
// previous stage's `empty`. No cp.async, no __syncthreads in the main loop:
// loads run kStages tiles ahead of the multiply.
constexpr int kTmaThreads = 384;

template <int kBn>
constexpr size_t TmaSharedBytes() {
  return WgTile<kBn>::kSharedBytes + 2 * sizeof(uint64_t) * WgTile<kBn>::kStages;
}
static_assert(TmaSharedBytes<256>() <= 232448 && TmaSharedBytes<128>() <= 232448,
              "an H100's opt-in shared memory per block");

// Q4 weights (BQuant): the whole producer warpgroup dequantises B into
// each stage (QuantStage, one k tile's loads in flight while the previous
// tile is stored), one thread adding A's TMA copy; `full` then counts the
// 128 producer threads' arrivals (after their stores and a proxy fence)
// plus A's bytes. Registers: producers 120, consumers 192 (40 and 232 with
// TMA B).
#if TPS_WGMMA_AVAILABLE && TPS_TMA_AVAILABLE
template <DType kW, int kBn>
__device__ __forceinline__ void ProduceQuantStage(int kt, int ktiles, int kStages, const void* w,
                                                  int n, int k, int n0, int m0,
                                                  const TensorMap* map_a, char* tile_a,
                                                  char* tile_b, uint64_t* full, uint64_t* empty,
                                                  QuantStage<kW, kBn, 128>& cur,
                                                  QuantStage<kW, kBn, 128>& next) {
  const int t = threadIdx.x;
  if (kt + 1 < ktiles) next.Fetch(w, n, k, n0, kt + 1, t);  // in flight while this one stores
  if (kt >= kStages) MbarrierWait(empty, (kt / kStages - 1) & 1);
  if (t == 0) {
    MbarrierExpectTx(full, kWgM * kWgK * 2);
    TmaLoadTile2d(tile_a, map_a, kt * kWgK, m0, full);
  }
  cur.Store(tile_b, t);
  FenceProxyAsyncShared();  // the stores, before the consumers' wgmma reads them
  MbarrierArrive(full);
}
#endif

template <int kBn, class BSource>
__global__ void __launch_bounds__(kTmaThreads, 1)
    GemmWgmmaTmaKernel(const __grid_constant__ TensorMap map_a,
                       const __grid_constant__ TensorMap map_b, const BSource bsrc,
                       const float* __restrict__ bias, float* __restrict__ c, int m, int n, int k,
                       int64_t c_stride) {
#if TPS_WGMMA_AVAILABLE && TPS_TMA_AVAILABLE
  using T = WgTile<kBn>;
  constexpr int kStages = T::kStages;
  char* smem_raw = DynamicSharedMemory<char>();
  char* smem =
      reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t{1023});
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + kStages * T::kStageBytes);
  uint64_t* empty = full + kStages;
  const int m0 = blockIdx.y * kWgM;
  const int n0 = blockIdx.x * kBn;
  const int ktiles = (k + kWgK - 1) / kWgK;
  const int wg = threadIdx.x / 128;
  auto tile_a = [&](int s) { return smem + s * T::kStageBytes; };
  auto tile_b = [&](int s) { return smem + s * T::kStageBytes + T::kATileBytes; };

  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      MbarrierInit(&full[s], BSource::kAsync ? 1 : 128);
      MbarrierInit(&empty[s], 256);
    }
    FenceMbarrierInit();
  }
  __syncthreads();

  if (wg == 0) {  // producer
    if constexpr (BSource::kAsync) {
      SetMaxRegistersDec<40>();
      if (threadIdx.x == 0) {
        for (int kt = 0; kt < ktiles; ++kt) {
          const int s = kt % kStages;
          // Use q = kt / kStages of stage s: use q - 1's consumers are done.
          if (kt >= kStages) MbarrierWait(&empty[s], (kt / kStages - 1) & 1);
          MbarrierArriveExpectTx(&full[s], T::kStageBytes);
          TmaLoadTile2d(tile_a(s), &map_a, kt * kWgK, m0, &full[s]);
          TmaLoadTile2d(tile_b(s), &map_b, kt * kWgK, n0, &full[s]);
        }
      }
    } else {
      SetMaxRegistersDec<120>();
      constexpr DType kW = QuantType<BSource>();
      QuantStage<kW, kBn, 128> even, odd;  // tiles kt and kt + 1, ping-pong
      if (ktiles > 0) even.Fetch(bsrc.w, n, k, n0, 0, threadIdx.x);
      for (int kt = 0; kt < ktiles; kt += 2) {
        ProduceQuantStage<kW, kBn>(kt, ktiles, kStages, bsrc.w, n, k, n0, m0, &map_a,
                                   tile_a(kt % kStages), tile_b(kt % kStages), &full[kt % kStages],
                                   &empty[kt % kStages], even, odd);
        if (kt + 1 < ktiles) {
          ProduceQuantStage<kW, kBn>(kt + 1, ktiles, kStages, bsrc.w, n, k, n0, m0, &map_a,
                                     tile_a((kt + 1) % kStages), tile_b((kt + 1) % kStages),
                                     &full[(kt + 1) % kStages], &empty[(kt + 1) % kStages], odd,
                                     even);
        }
      }
    }
    return;
  }
  SetMaxRegistersInc<BSource::kAsync ? 232 : 192>();
  const int group = wg - 1;  // this consumer's rows: 64 * group ..
  float d[kBn / 128][64];
  ZeroAccumulators<kBn>(d);
  for (int kt = 0; kt < ktiles; ++kt) {
    const int s = kt % kStages;
    MbarrierWait(&full[s], (kt / kStages) & 1);
    IssueStage<kBn>(d, SharedAddress(tile_a(s)) + group * 64 * 128, SharedAddress(tile_b(s)));
    WgmmaWait<1>();  // tile kt - 1's wgmmas are done: its stage may refill
    if (kt > 0) MbarrierArrive(&empty[(kt - 1) % kStages]);
  }
  WgmmaWait<0>();
  StoreWgmmaTile<kBn>(d, bias, c, m, n, c_stride, m0 + group * 64, n0);
#else
  // Built for an architecture without wgmma and TMA: the host never launches this.
  Unused(map_a, map_b, bsrc, bias, c, m, n, k, c_stride);
#endif
}

template <int kBn, class BSource>
absl::Status LaunchWgmma(const GemmBf16Params& p, BSource b, int64_t c_stride,
                         const Stream& stream) {
  TPS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(GemmWgmmaKernel<kBn, BSource>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(WgTile<kBn>::kSharedBytes)));
  const dim3 grid((p.n + kBn - 1) / kBn, (p.m + kWgM - 1) / kWgM);
  GemmWgmmaKernel<kBn, BSource><<<grid, kWgThreads, WgTile<kBn>::kSharedBytes,
                                  static_cast<cudaStream_t>(stream.cuda_stream)>>>(
      p.a, b, p.bias, p.c, p.m, p.n, p.k, c_stride);
  return LaunchStatus("GemmWgmmaKernel");
}

// The cp.async kernel (or, `tma`, the warp-specialised one) on 256- or
// 128-wide tiles.
template <class BSource>
absl::Status LaunchWgmmaTiles(const GemmBf16Params& p, BSource b, int64_t c_stride, bool wide,
                              bool tma, const Stream& stream) {
  if (tma) {
    // Q8_0's producer stages (two 16-byte quant chunks a block) spill on
    // 256-wide tiles at the producers' 120 registers (ptxas: 114 bytes):
    // 128-wide tiles for them.
    if constexpr (BSource::kType == DType::kQ8_0) {
      return LaunchWgmmaTma<128>(p, b, c_stride, stream);
    } else {
      return wide ? LaunchWgmmaTma<256>(p, b, c_stride, stream)
                  : LaunchWgmmaTma<128>(p, b, c_stride, stream);
    }
  }
  return wide ? LaunchWgmma<256>(p, b, c_stride, stream) : LaunchWgmma<128>(p, b, c_stride, stream);
}

}  // namespace

bool WgmmaSupported() {
  int device = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    cudaGetLastError();  // not sticky: clear it
    return false;
  }
  return major == 9;
}

namespace {

// GemmBf16Wgmma's and GemmBf16WgmmaTma's checks (errors named after `what`);
// on success *c_stride is set and *wide says whether 256-wide tiles fill
// the device's SMs (they re-read a half as often; 128-wide ones otherwise).
// `b`: p.b, or the quantized weights in its place.
absl::Status CheckWgmma(const GemmBf16Params& p, const void* b, const char* what, int64_t* c_stride,
                        bool* wide) {
  auto bad = [what](const char* why) {
    return absl::InvalidArgumentError(absl::StrCat(what, why));
  };
  if (p.m < 0 || p.n < 0 || p.k <= 0) return bad(": bad shape");
  if (p.k % 8 != 0) return bad(": k must be a multiple of 8");
  if (p.m > 0 && p.n > 0 && (p.a == nullptr || b == nullptr || p.c == nullptr))
    return bad(": null pointer");
  if ((reinterpret_cast<uintptr_t>(p.a) | reinterpret_cast<uintptr_t>(b)) % 16 != 0) {
    return bad(": a and b must be 16-byte aligned");
  }
  *c_stride = p.c_stride == 0 ? p.n : p.c_stride;
  if (*c_stride < p.n) return bad(": c_stride below n");
  if ((p.m + kWgM - 1) / kWgM > 65535) return bad(": m too large for one launch");
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  if (!WgmmaSupported()) {
    return absl::FailedPreconditionError(absl::StrCat(what, " needs an sm_90 (Hopper) device"));
  }
  int device = 0, sms = 0;
  TPS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  TPS_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  *wide = static_cast<int64_t>((p.n + 255) / 256) * ((p.m + kWgM - 1) / kWgM) >= sms;
  return absl::OkStatus();
}

template <int kBn, class BSource>
absl::Status LaunchWgmmaTma(const GemmBf16Params& p, BSource b, int64_t c_stride,
                            const Stream& stream) {
  TensorMap map_a, map_b{};  // map_b: B's rows (BRows); unused for quantized B
  if (absl::Status st = EncodeTensorMapBf16(&map_a, p.a, p.m, p.k, kWgM, kWgK); !st.ok()) return st;
  if constexpr (BSource::kAsync) {
    if (absl::Status st = EncodeTensorMapBf16(&map_b, b.b, p.n, p.k, kBn, kWgK); !st.ok()) {
      return st;
    }
  }
  constexpr int kShared = static_cast<int>(TmaSharedBytes<kBn>());
  TPS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      GemmWgmmaTmaKernel<kBn, BSource>, cudaFuncAttributeMaxDynamicSharedMemorySize, kShared));
  const dim3 grid((p.n + kBn - 1) / kBn, (p.m + kWgM - 1) / kWgM);
  GemmWgmmaTmaKernel<kBn, BSource>
      <<<grid, kTmaThreads, kShared, static_cast<cudaStream_t>(stream.cuda_stream)>>>(
          map_a, map_b, b, p.bias, p.c, p.m, p.n, p.k, c_stride);
  return LaunchStatus("GemmWgmmaTmaKernel");
}

}  // namespace

absl::Status GemmBf16Wgmma(const GemmBf16Params& p, const Stream& stream) {
  int64_t c_stride = 0;
  bool wide = false;
  if (absl::Status st = CheckWgmma(p, p.b, "GemmBf16Wgmma", &c_stride, &wide); !st.ok()) return st;
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  return LaunchWgmmaTiles(p, BRows{p.b}, c_stride, wide, /*tma=*/false, stream);
}

bool WgmmaDequantizes(DType w_dtype) { return IsQuantized(w_dtype); }

absl::Status GemmWgmmaQuantWeights(const GemmBf16Params& p, const void* w, DType w_dtype, bool tma,
                                   const Stream& stream) {
  int64_t c_stride = 0;
  bool wide = false;
  if (absl::Status st = CheckWgmma(p, w, "GemmWgmmaQuantWeights", &c_stride, &wide); !st.ok()) {
    return st;
  }
  if (!WgmmaDequantizes(w_dtype) || p.k % kQuantBlockValues != 0) {
    return absl::InvalidArgumentError(
        "GemmWgmmaQuantWeights: Q8_0, Q4_0 or Q4_1 weights with k a multiple of 32");
  }
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  switch (w_dtype) {
    case DType::kQ8_0:
      return LaunchWgmmaTiles(p, BQuant<DType::kQ8_0>{w}, c_stride, wide, tma, stream);
    case DType::kQ4_0:
      return LaunchWgmmaTiles(p, BQuant<DType::kQ4_0>{w}, c_stride, wide, tma, stream);
    default:
      return LaunchWgmmaTiles(p, BQuant<DType::kQ4_1>{w}, c_stride, wide, tma, stream);
  }
}

absl::Status GemmBf16WgmmaTma(const GemmBf16Params& p, const Stream& stream) {
  int64_t c_stride = 0;
  bool wide = false;
  if (absl::Status st = CheckWgmma(p, p.b, "GemmBf16WgmmaTma", &c_stride, &wide); !st.ok()) {
    return st;
  }
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  return LaunchWgmmaTiles(p, BRows{p.b}, c_stride, wide, /*tma=*/true, stream);
}

}  // namespace tpserve::kernels::cuda
