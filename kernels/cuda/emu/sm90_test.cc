// The CUDA emulator's Hopper (sm_90) instructions against the PTX ISA: one
// wgmma on 128-byte-swizzled tiles against a plain matrix product, its
// hazards (a cp.async into an in-flight operand, operands not fenced for the
// async proxy), TMA tile loads and mbarriers (a swizzled box with zeros
// outside the matrix; missing transaction bytes, a missing arrival, an
// unfenced init), and setmaxnreg's rules. The rest of the emulator's
// contract is emu_test.cc.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/emu/mma_sm80_emu.h"
#include "kernels/cuda/emu/test_util.h"
#include "kernels/cuda/emu/tma_sm90_emu.h"

namespace {

using ::tpserve_emu::Launcher;
using ::tpserve_emu::test::DeviceCopy;
using ::tpserve_emu::test::HostCopy;

// One m64n128k16 wgmma (one warpgroup) on A (64 x 64) and B (128 x 64) bf16
// row-major in global memory, copied into 128-byte-swizzled K-major tiles
// (chunk c of row r at chunk c ^ (r % 8)); the wgmma reads k slice `kk`
// (values 16 kk .. 16 kk + 15) through descriptors built here from the PTX
// ISA's bit layout, accumulating onto 1.0. before[t]: thread t's first
// accumulator between issue and wait. mode (WgmmaMode) breaks one rule.
constexpr int kWgmmaShared = 1024 + 64 * 128 + 128 * 128;

uint64_t Sw128Descriptor(uint32_t shared_address) {
  return static_cast<uint64_t>((shared_address & 0x3FFFF) >> 4) | (uint64_t{1} << 16) |
         (uint64_t{1024 >> 4} << 32) | (uint64_t{1} << 62);
}

__device__ void StoreSwizzled(char* tile, const uint16_t* g, int rows, int threads) {
  for (int i = threadIdx.x; i < rows * 64; i += threads) {
    const int r = i / 64, k = i % 64;
    const int chunk = k / 8;
    reinterpret_cast<uint16_t*>(tile + r * 128 + ((chunk ^ (r % 8)) << 4))[k % 8] = g[i];
  }
}

enum WgmmaMode {
  kAsMeant,
  kCpAsyncIntoOperand,  // a cp.async into B while the wgmma reads it
  // Thread 0 alone stores A and B (a fence by one thread publishes every
  // thread's earlier stores in the emulator, so one writer makes these
  // deterministic), with no fence after them:
  kNoProxyFence,       // none at all
  kFenceBeforeStores,  // one before the stores it should order
};

__global__ void WgmmaKernel(const uint16_t* a, const uint16_t* b, int kk, float* c, float* before,
                            int mode) {
  using namespace tpserve::kernels::cuda;
  char* raw = ::tpserve_emu::DynamicShared<char>();
  char* ta = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t{1023});
  char* tb = ta + 64 * 128;
  if (mode == kNoProxyFence || mode == kFenceBeforeStores) {
    if (threadIdx.x == 0) {
      if (mode == kFenceBeforeStores) FenceProxyAsyncShared();
      StoreSwizzled(ta, a, 64, 1);
      StoreSwizzled(tb, b, 128, 1);
    }
  } else {
    StoreSwizzled(ta, a, 64, 128);
    StoreSwizzled(tb, b, 128, 128);
    FenceProxyAsyncShared();
  }
  __syncthreads();
  float d[64];
  for (float& v : d) v = 1.0f;
  WgmmaFence();
  WgmmaBf16N128(d, Sw128Descriptor(SharedAddress(ta) + kk * 32),
                Sw128Descriptor(SharedAddress(tb) + kk * 32));
  WgmmaCommit();
  before[threadIdx.x] = d[0];
  if (mode == kCpAsyncIntoOperand) CpAsync16(tb + 16 * threadIdx.x, b, true);
  WgmmaWait<0>();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int j = 0; j < 16; ++j) {
    for (int e = 0; e < 4; ++e) {
      const int row = warp * 16 + lane / 4 + (e / 2) * 8, col = j * 8 + (lane % 4) * 2 + e % 2;
      c[row * 128 + col] = d[j * 4 + e];
    }
  }
}

struct WgmmaData {
  std::vector<float> fa, fb;  // the bf16 values of A (64 x 64) and B (128 x 64)
  uint16_t *a, *b;
};
WgmmaData MakeWgmmaData(unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<uint16_t> a(64 * 64), b(128 * 64);
  WgmmaData w;
  for (auto* v : {&a, &b}) {
    std::vector<float>& f = v == &a ? w.fa : w.fb;
    for (uint16_t& x : *v) {
      x = __bfloat16_as_ushort(__float2bfloat16_rn(dist(rng)));
      f.push_back(__bfloat162float(__ushort_as_bfloat16(x)));
    }
  }
  w.a = DeviceCopy(a);
  w.b = DeviceCopy(b);
  return w;
}

TEST(CudaEmuSm90, WgmmaComputesAMatrixProductFromSwizzledTiles) {
  WgmmaData w = MakeWgmmaData(5);
  for (int kk = 0; kk < 4; ++kk) {
    SCOPED_TRACE(testing::Message() << "k slice " << kk);
    float* dc = DeviceCopy(std::vector<float>(64 * 128, 0.0f));
    float* dbefore = DeviceCopy(std::vector<float>(128, 0.0f));
    Launcher("WgmmaKernel", 1, 128, kWgmmaShared) (&WgmmaKernel)(w.a, w.b, kk, dc, dbefore,
                                                                 kAsMeant);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const std::vector<float> c = HostCopy(dc, 64 * 128);
    for (int r = 0; r < 64; ++r) {
      for (int n = 0; n < 128; ++n) {
        double want = 1.0;
        for (int k = 16 * kk; k < 16 * kk + 16; ++k) {
          want += static_cast<double>(w.fa[r * 64 + k]) * w.fb[n * 64 + k];
        }
        ASSERT_NEAR(c[r * 128 + n], want, 1e-4) << "row " << r << " col " << n;
      }
    }
    // In flight, the accumulators are not the registers' to read.
    for (float v : HostCopy(dbefore, 128)) EXPECT_TRUE(std::isnan(v));
    cudaFree(dc);
    cudaFree(dbefore);
  }
  cudaFree(w.a);
  cudaFree(w.b);
}

// WgmmaKernel in `mode` dies with `message`.
void ExpectWgmmaKernelDies(WgmmaMode mode, const char* message) {
  WgmmaData w = MakeWgmmaData(6);
  float* dc = DeviceCopy(std::vector<float>(64 * 128, 0.0f));
  float* dbefore = DeviceCopy(std::vector<float>(128, 0.0f));
  EXPECT_DEATH(
      {
        Launcher("WgmmaKernel", 1, 128, kWgmmaShared) (&WgmmaKernel)(w.a, w.b, 0, dc, dbefore,
                                                                     mode);
        cudaDeviceSynchronize();
      },
      message);
}

TEST(CudaEmuSm90, CpAsyncOverAnInFlightWgmmaOperandAborts) {
  ExpectWgmmaKernelDies(kCpAsyncIntoOperand, "in-flight wgmma of warpgroup 0 reads");
}

TEST(CudaEmuSm90, WgmmaOperandsStoredWithoutAProxyFenceAbort) {
  ExpectWgmmaKernelDies(kNoProxyFence, "operand A row [0-9]+ reads .* with no fence.proxy.async");
  ExpectWgmmaKernelDies(kFenceBeforeStores, "with no fence.proxy.async after the write");
}

// A TMA tile load (PTX cp.async.bulk.tensor) of a 64 x 64 bf16 box at
// (column c0, row c1) of a row-major rows x cols matrix, completing on an
// mbarrier; every thread waits for the phase, then the box is copied out
// unswizzled (chunk c of row r read from chunk c ^ (r % 8)). mode 0: as
// meant; 1: the arrival expects no transaction bytes; 2: the barrier counts
// two arrivals and gets one; 3: the init is not fenced for the async proxy.
// before[0]: the box's first element just after the issue.
struct alignas(64) TmaBox {
  uint64_t map[16];  // a TensorMap's 128 bytes
};
constexpr int kTmaShared = 1024 + 64 * 128 + 64;

__global__ void TmaKernel(const TmaBox map, int c0, int c1, uint16_t* out, uint16_t* before,
                          int mode) {
  using namespace tpserve::kernels::cuda;
  char* raw = ::tpserve_emu::DynamicShared<char>();
  char* tile =
      reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t{1023});
  uint64_t* bar = reinterpret_cast<uint64_t*>(tile + 64 * 128);
  if (threadIdx.x == 0) {
    MbarrierInit(bar, mode == 2 ? 2 : 1);
    if (mode != 3) FenceMbarrierInit();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    reinterpret_cast<uint16_t*>(tile)[0] = 0x1234;  // what was there before the copy
    MbarrierArriveExpectTx(bar, mode == 1 ? 0 : 64 * 128);
    ::tpserve_emu::TmaLoad2d(tile, &map, c0, c1, bar);
    before[0] = reinterpret_cast<uint16_t*>(tile)[0];
  }
  MbarrierWait(bar, 0);
  for (int i = threadIdx.x; i < 64 * 64; i += blockDim.x) {
    const int r = i / 64, k = i % 64;
    out[i] = reinterpret_cast<uint16_t*>(tile + r * 128 + (((k / 8) ^ (r % 8)) << 4))[k % 8];
  }
}

struct TmaRun {
  std::vector<uint16_t> m;  // rows x cols
  uint16_t* dm;
  TmaBox map;
};
TmaRun MakeTmaRun(int rows, int cols) {
  TmaRun t;
  for (int i = 0; i < rows * cols; ++i) t.m.push_back(static_cast<uint16_t>(1 + i % 60000));
  t.dm = DeviceCopy(t.m);
  ::tpserve_emu::EncodeTensorMap(&t.map, {.base = t.dm,
                                          .rows = rows,
                                          .cols = cols,
                                          .row_stride_bytes = cols * 2,
                                          .box_rows = 64,
                                          .box_cols = 64,
                                          .elem_bytes = 2});
  return t;
}

TEST(CudaEmuSm90, TmaLandsASwizzledBoxWithZerosOutsideTheMatrix) {
  const int rows = 100, cols = 72;
  TmaRun t = MakeTmaRun(rows, cols);
  for (const auto& [c0, c1] : std::vector<std::pair<int, int>>{{0, 0}, {32, 60}, {-8, -3}}) {
    SCOPED_TRACE(testing::Message() << "box at column " << c0 << ", row " << c1);
    uint16_t* out = DeviceCopy(std::vector<uint16_t>(64 * 64, 7));
    uint16_t* before = DeviceCopy(std::vector<uint16_t>(1, 7));
    Launcher("TmaKernel", 1, 96, kTmaShared) (&TmaKernel)(t.map, c0, c1, out, before, 0);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const std::vector<uint16_t> got = HostCopy(out, 64 * 64);
    for (int r = 0; r < 64; ++r) {
      for (int k = 0; k < 64; ++k) {
        const int row = c1 + r, col = c0 + k;
        const uint16_t want =
            row >= 0 && row < rows && col >= 0 && col < cols ? t.m[row * cols + col] : 0;
        ASSERT_EQ(got[r * 64 + k], want) << "box row " << r << " column " << k;
      }
    }
    EXPECT_EQ(HostCopy(before, 1)[0], 0xFFFF) << "in flight, the box is not there yet";
    cudaFree(out);
    cudaFree(before);
  }
  cudaFree(t.dm);
}

// TmaKernel in `mode` on a 64 x 64 matrix dies with `message`.
void ExpectTmaKernelDies(int mode, const char* message) {
  TmaRun t = MakeTmaRun(64, 64);
  uint16_t* out = DeviceCopy(std::vector<uint16_t>(64 * 64, 7));
  uint16_t* before = DeviceCopy(std::vector<uint16_t>(1, 7));
  EXPECT_DEATH(
      {
        Launcher("TmaKernel", 1, 32, kTmaShared) (&TmaKernel)(t.map, 0, 0, out, before, mode);
        cudaDeviceSynchronize();
      },
      message);
}

TEST(CudaEmuSm90, TmaWithoutExpectedBytesIsReadBeforeItLands) {
  // Landing late, the copy is still in flight at the end; landing early
  // (a seeded schedule), its bytes complete on a phase that expected none.
  ExpectTmaKernelDies(1, "ended with (1 TMA copies in flight|mbarrier .* owing)");
}

TEST(CudaEmuSm90, MbarrierPhaseMissingAnArrivalDeadlocksWithTheWaitersNamed) {
  ExpectTmaKernelDies(2, "deadlock.*mbarrier.try_wait");
}

TEST(CudaEmuSm90, TmaOnAnMbarrierWhoseInitIsNotFencedAborts) {
  ExpectTmaKernelDies(3, "whose mbarrier.init thread 0 has not made visible to the async proxy");
}

// setmaxnreg by each warpgroup of a 384-thread block: r0, r1, r2 for
// warpgroups 0-2 (inc above 128, dec below), thread `odd` (if >= 0)
// asking for 8 more, threads from `stop` on executing none.
__global__ void SetMaxRegistersKernel(int r0, int r1, int r2, int odd, int stop) {
  const int t = static_cast<int>(threadIdx.x);
  if (t >= stop) return;
  const int g = t / 128;
  const int want = (g == 0 ? r0 : g == 1 ? r1 : r2) + (t == odd ? 8 : 0);
  ::tpserve_emu::SetMaxRegisters(want, /*inc=*/want > 128);
}

void RunSetMaxRegisters(int r0, int r1, int r2, int odd, int stop) {
  Launcher("SetMaxRegistersKernel", 1, 384) (&SetMaxRegistersKernel)(r0, r1, r2, odd, stop);
  cudaDeviceSynchronize();
}

TEST(CudaEmuSm90, SetMaxRegistersFollowsThePtxRules) {
  // A producer at 40 and two consumers at 232: all 64512 registers a
  // 384-thread block can have (168 per thread); 8 more for the producer
  // is 65536, which fits an SM but not the block.
  RunSetMaxRegisters(40, 232, 232, -1, 384);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_DEATH(RunSetMaxRegisters(48, 232, 232, -1, 384), "65536 registers, more than the 64512");
  EXPECT_DEATH(RunSetMaxRegisters(100, 232, 232, -1, 384), "multiple of 8");
  EXPECT_DEATH(RunSetMaxRegisters(40, 232, 232, 200, 384), "whose other threads executed");
  EXPECT_DEATH(RunSetMaxRegisters(40, 232, 232, -1, 300), "44 of its 128 threads");
}

}  // namespace
