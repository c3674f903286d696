// The CUDA emulator's own contract: barriers, shuffles, launch validation,
// graph capture, and the mma/ldmatrix fragment layouts against a plain
// matrix product (layouts from the PTX ISA, see mma_sm80_emu.h).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/emu/grid.h"
#include "kernels/cuda/emu/mma_sm80_emu.h"
#include "kernels/cuda/emu/test_util.h"

namespace {

using ::tpserve_emu::Launcher;
using ::tpserve_emu::test::DeviceCopy;
using ::tpserve_emu::test::HostCopy;

// Reverses each block's values through shared memory: wrong without the barrier.
__global__ void ReverseKernel(const int* in, int* out) {
  __shared__ int s[256];
  const int base = blockIdx.x * blockDim.x;
  s[threadIdx.x] = in[base + threadIdx.x];
  __syncthreads();
  out[base + threadIdx.x] = s[blockDim.x - 1 - threadIdx.x];
}

TEST(CudaEmu, SyncThreadsOrdersSharedMemory) {
  std::vector<int> in(4 * 256);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int>(i);
  int* d_in = DeviceCopy(in);
  int* d_out = DeviceCopy(std::vector<int>(in.size(), 0));
  Launcher("ReverseKernel", 4, 256) (&ReverseKernel)(d_in, d_out);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<int> out = HostCopy(d_out, in.size());
  for (int b = 0; b < 4; ++b) {
    for (int t = 0; t < 256; ++t) ASSERT_EQ(out[b * 256 + t], b * 256 + 255 - t);
  }
  cudaFree(d_in);
  cudaFree(d_out);
}

__global__ void IotaKernel(int* out) { out[threadIdx.x] = static_cast<int>(threadIdx.x); }

int MemoryMappings() {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);) ++n;
  return n;
}

// Blocks run on whichever thread waits for their stream, and a server's
// threads come and go: 40 short-lived threads each running a 1024-thread
// block must reuse the same fiber stacks (kept per thread, each thread's
// 1024 stacks were lost with it, ~2048 mappings a thread, until mmap failed).
TEST(CudaEmu, FiberStacksOutliveTheThreadsThatRanBlocks) {
  int* d_out = DeviceCopy(std::vector<int>(1024, -1));
  auto run_once = [d_out] {
    Launcher("IotaKernel", 1, 1024) (&IotaKernel)(d_out);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  };
  std::thread(run_once).join();  // the pool's stacks exist from here on
  const int before = MemoryMappings();
  for (int i = 0; i < 40; ++i) std::thread(run_once).join();
  EXPECT_LT(MemoryMappings() - before, 256);
  const std::vector<int> out = HostCopy(d_out, 1024);
  for (int t = 0; t < 1024; ++t) ASSERT_EQ(out[t], t);
  cudaFree(d_out);
}

__global__ void ShuffleKernel(int* out) {
  const int lane = threadIdx.x % 32;
  int sum = lane;
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const int from3 = __shfl_sync(0xffffffffu, lane * 10, 3);
  const int down = __shfl_down_sync(0xffffffffu, lane, 1);
  const int up = __shfl_up_sync(0xffffffffu, lane, 2);
  const unsigned ballot = __ballot_sync(0xffffffffu, lane % 2);
  out[threadIdx.x * 5 + 0] = sum;
  out[threadIdx.x * 5 + 1] = from3;
  out[threadIdx.x * 5 + 2] = down;
  out[threadIdx.x * 5 + 3] = up;
  out[threadIdx.x * 5 + 4] = static_cast<int>(ballot);
}

TEST(CudaEmu, WarpShufflesFollowTheirDefinitions) {
  int* d = DeviceCopy(std::vector<int>(64 * 5, -1));
  Launcher("ShuffleKernel", 1, 64) (&ShuffleKernel)(d);
  std::vector<int> out = HostCopy(d, 64 * 5);
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32;
    EXPECT_EQ(out[t * 5 + 0], 496) << t;  // 0 + 1 + ... + 31
    EXPECT_EQ(out[t * 5 + 1], 30) << t;
    EXPECT_EQ(out[t * 5 + 2], lane == 31 ? 31 : lane + 1) << t;
    EXPECT_EQ(out[t * 5 + 3], lane < 2 ? lane : lane - 2) << t;
    EXPECT_EQ(static_cast<unsigned>(out[t * 5 + 4]), 0xaaaaaaaau) << t;
  }
  cudaFree(d);
}

__global__ void NoopKernel(int* out) {
  if (out != nullptr) out[0] = 1;
}

TEST(CudaEmu, LaunchLimitsAreReportedLikeTheDriver) {
  Launcher("NoopKernel", 1, 2048) (&NoopKernel)(nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // read clears it
  Launcher("NoopKernel", dim3(1, 70000), 32) (&NoopKernel)(nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  // More than 48 KiB of dynamic shared memory needs the opt-in attribute.
  Launcher("NoopKernel", 1, 32, 64 * 1024) (&NoopKernel)(nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  ASSERT_EQ(
      cudaFuncSetAttribute(NoopKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024),
      cudaSuccess);
  Launcher("NoopKernel", 1, 32, 64 * 1024) (&NoopKernel)(nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(CudaEmu, HostPointerArgumentAborts) {
  int host = 0;
  EXPECT_DEATH(
      {
        Launcher("NoopKernel", 1, 32) (&NoopKernel)(&host);
        cudaDeviceSynchronize();  // launches run when waited for
      },
      "not device memory");
}

__global__ void DivergentBarrierKernel(int* out) {
  if (threadIdx.x < 16) {
    out[threadIdx.x] = 1;
    __syncthreads();
  } else {
    __shfl_xor_sync(0xffffffffu, 1, 1);
  }
}

TEST(CudaEmu, DivergentBarriersAbortWithTheThreadsNamed) {
  int* d = DeviceCopy(std::vector<int>(32, 0));
  EXPECT_DEATH(
      {
        Launcher("DivergentBarrierKernel", 1, 32) (&DivergentBarrierKernel)(d);
        cudaDeviceSynchronize();  // launches run when waited for
      },

      "deadlock.*DivergentBarrierKernel");
  cudaFree(d);
}

__global__ void DivergentCollectivesKernel(int* out) {
  out[threadIdx.x] = threadIdx.x < 16 ? __shfl_xor_sync(0xffffffffu, 1, 1)
                                      : static_cast<int>(__ballot_sync(0xffffffffu, 1));
}

TEST(CudaEmu, LanesAtDifferentCollectivesAbort) {
  int* d = DeviceCopy(std::vector<int>(32, 0));
  EXPECT_DEATH(
      {
        Launcher("DivergentCollectivesKernel", 1, 32) (&DivergentCollectivesKernel)(d);
        cudaDeviceSynchronize();  // launches run when waited for
      },

      "divergent warp collectives");
  cudaFree(d);
}

__global__ void PartialWarpShuffleKernel(int* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
}

TEST(CudaEmu, FullMaskShuffleInAPartialWarpAborts) {
  int* d = DeviceCopy(std::vector<int>(48, 0));
  EXPECT_DEATH(
      {
        Launcher("PartialWarpShuffleKernel", 1, 48) (&PartialWarpShuffleKernel)(d);
        cudaDeviceSynchronize();  // launches run when waited for
      },

      "partial warp");
  cudaFree(d);
}

__global__ void AddOneKernel(float* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += 1.0f;
}

TEST(CudaEmu, GraphsReplayCapturedWork) {
  float* d = DeviceCopy(std::vector<float>(100, 0.0f));
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  Launcher("AddOneKernel", 4, 32, 0, s) (&AddOneKernel)(d, 100);
  // Synchronous copies are not allowed while capturing.
  float probe;
  EXPECT_EQ(cudaMemcpy(&probe, d, sizeof(probe), cudaMemcpyDeviceToHost),
            cudaErrorStreamCaptureUnsupported);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  EXPECT_EQ(HostCopy(d, 100)[7], 0.0f);  // captured, not run
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  EXPECT_EQ(HostCopy(d, 100)[7], 3.0f);
  // Replaying after the buffer is freed aborts (the pointer is re-checked).
  cudaFree(d);
  EXPECT_DEATH(
      {
        cudaGraphLaunch(exec, s);
        cudaStreamSynchronize(s);
      },
      "not device memory");
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

TEST(CudaEmu, FreshDeviceMemoryIsNaN) {
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 16 * sizeof(float)), cudaSuccess);
  EXPECT_TRUE(std::isnan(HostCopy(d, 16)[5]));
  cudaFree(d);
  // Copies must stay inside an allocation.
  ASSERT_EQ(cudaMalloc(&d, 16 * sizeof(float)), cudaSuccess);
  std::vector<float> big(32);
  EXPECT_EQ(cudaMemcpy(d, big.data(), big.size() * sizeof(float), cudaMemcpyHostToDevice),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);  // recorded, as by the runtime
  cudaFree(d);
}

// One warp: ldmatrix A (16x16, row-major) and B (8 rows of n, 16 k each:
// "col" layout) from shared memory, one mma, store C (16x8).
__global__ void MmaKernel(const uint16_t* a, const uint16_t* b, float* c) {
  using namespace tpserve::kernels::cuda;
  __shared__ __align__(16) uint16_t sa[16 * 16];
  __shared__ __align__(16) uint16_t sb[8 * 16];
  const int lane = threadIdx.x;
  for (int i = lane; i < 256; i += 32) sa[i] = a[i];
  for (int i = lane; i < 128; i += 32) sb[i] = b[i];
  __syncthreads();
  uint32_t ra[4], rb[4];
  // A: matrices 0..3 = rows 0-7/cols 0-7, rows 8-15/cols 0-7, rows 0-7/cols
  // 8-15, rows 8-15/cols 8-15, matching reg0..reg3 of the A fragment.
  LdMatrixX4(&sa[((lane % 8) + 8 * ((lane / 8) % 2)) * 16 + 8 * (lane / 16)], ra);
  // B stored (n, k): matrices 0 and 1 are k 0-7 and k 8-15 of the 8 n rows.
  LdMatrixX4(&sb[(lane % 8) * 16 + 8 * ((lane / 8) % 2)], rb);
  float acc[4] = {1.0f, 1.0f, 1.0f, 1.0f};
  MmaBf16(acc, ra, rb[0], rb[1]);
  const int g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) c[(g + 8 * (i / 2)) * 8 + 2 * t + (i % 2)] = acc[i];
}

// The same product with B stored (k, n) row-major and its fragment loaded
// with ldmatrix.trans: matrices 0 and 1 are k 0-7 and k 8-15 (2 and 3
// repeat them).
__global__ void MmaTransKernel(const uint16_t* a, const uint16_t* b_kn, float* c) {
  using namespace tpserve::kernels::cuda;
  __shared__ __align__(16) uint16_t sa[16 * 16];
  __shared__ __align__(16) uint16_t sb[16 * 8];
  const int lane = threadIdx.x;
  for (int i = lane; i < 256; i += 32) sa[i] = a[i];
  for (int i = lane; i < 128; i += 32) sb[i] = b_kn[i];
  __syncthreads();
  uint32_t ra[4], rb[4];
  LdMatrixX4(&sa[((lane % 8) + 8 * ((lane / 8) % 2)) * 16 + 8 * (lane / 16)], ra);
  LdMatrixX4Trans(&sb[(8 * ((lane / 8) % 2) + lane % 8) * 8], rb);
  float acc[4] = {1.0f, 1.0f, 1.0f, 1.0f};
  MmaBf16(acc, ra, rb[0], rb[1]);
  const int g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) c[(g + 8 * (i / 2)) * 8 + 2 * t + (i % 2)] = acc[i];
}

// Runs `kernel` (one warp) on random bf16 A (16 x 16, row-major) and B (16 x
// 8 as 128 values, B[k][n] at b_index(k, n)) and expects C = 1 + A B.
template <typename BIndex>
void ExpectMmaProduct(const char* name, void (*kernel)(const uint16_t*, const uint16_t*, float*),
                      unsigned seed, BIndex b_index) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<uint16_t> a(256), b(128);
  std::vector<float> fa(256), fb(128);
  for (int i = 0; i < 256; ++i) {
    a[i] = __bfloat16_as_ushort(__float2bfloat16_rn(dist(rng)));
    fa[i] = __bfloat162float(__ushort_as_bfloat16(a[i]));
  }
  for (int i = 0; i < 128; ++i) {
    b[i] = __bfloat16_as_ushort(__float2bfloat16_rn(dist(rng)));
    fb[i] = __bfloat162float(__ushort_as_bfloat16(b[i]));
  }
  uint16_t* da = DeviceCopy(a);
  uint16_t* db = DeviceCopy(b);
  float* dc = DeviceCopy(std::vector<float>(128, 0.0f));
  Launcher(name, 1, 32)(kernel)(da, db, dc);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<float> c = HostCopy(dc, 128);
  for (int r = 0; r < 16; ++r) {
    for (int n = 0; n < 8; ++n) {
      double want = 1.0;
      for (int k = 0; k < 16; ++k) want += static_cast<double>(fa[r * 16 + k]) * fb[b_index(k, n)];
      EXPECT_NEAR(c[r * 8 + n], want, 1e-4) << "row " << r << " col " << n;
    }
  }
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
}

TEST(CudaEmu, MmaFragmentsComputeAMatrixProduct) {
  ExpectMmaProduct("MmaKernel", &MmaKernel, 7, [](int k, int n) { return n * 16 + k; });
}

TEST(CudaEmu, LdMatrixTransGivesTheBFragmentOfARowMajorMatrix) {
  ExpectMmaProduct("MmaTransKernel", &MmaTransKernel, 11, [](int k, int n) { return k * 8 + n; });
}

__global__ void CpAsyncKernel(const float* src, float* out) {
  using namespace tpserve::kernels::cuda;
  __shared__ __align__(16) float s[8];
  if (threadIdx.x == 0) {
    for (int i = 0; i < 8; ++i) s[i] = -1.0f;
    CpAsync16(&s[0], src, true);
    CpAsyncCommit();
    CpAsync16(&s[4], src + 4, false);
    CpAsyncCommit();
    out[0] = s[0];  // nothing waited for: still the old value
    CpAsyncWait<1>();
    out[1] = s[0];  // first group landed
    out[2] = s[4];  // second not yet
    CpAsyncWait<0>();
    out[3] = s[4];  // zero-filled
  }
}

TEST(CudaEmu, CpAsyncLandsAtTheWaitThatRetiresIt) {
  float* src = DeviceCopy(std::vector<float>{5, 6, 7, 8, 9, 10, 11, 12});
  float* out = DeviceCopy(std::vector<float>(4, 0.0f));
  Launcher("CpAsyncKernel", 1, 32) (&CpAsyncKernel)(src, out);
  EXPECT_EQ(HostCopy(out, 4), (std::vector<float>{-1.0f, 5.0f, -1.0f, 0.0f}));
  cudaFree(src);
  cudaFree(out);
}

// Reads its static shared memory before writing it; the registration is
// what rewrite_cu.py adds after every static __shared__ declaration.
__global__ void SharedBeforeWriteKernel(int* out) {
  __shared__ int s[32];
  static thread_local ::tpserve_emu::StaticShared registered(&s, sizeof(s));
  if (threadIdx.x == 0) {
    out[blockIdx.x] = s[0];
    s[0] = static_cast<int>(blockIdx.x);
  }
}

TEST(CudaEmu, StaticSharedMemoryIsPoisonedAtEveryBlockStart) {
  int* d = DeviceCopy(std::vector<int>(16, 0));
  Launcher("SharedBeforeWriteKernel", 16, 32) (&SharedBeforeWriteKernel)(d);
  // No block sees the value a previous block on the same OS thread left.
  EXPECT_EQ(HostCopy(d, 16), std::vector<int>(16, -1));
  cudaFree(d);
}

__global__ void BlockOrderKernel(int* counter, int* out) {
  if (threadIdx.x == 0) out[blockIdx.x] = atomicAdd(counter, 1);
}

TEST(CudaEmu, BlocksRunInASeededRandomOrder) {
  if (::tpserve_emu::ScheduleSeed() == 0) GTEST_SKIP() << "skipped: TPSERVE_CUDA_EMU_SEED=0";
  int* counter = DeviceCopy(std::vector<int>{0});
  int* d = DeviceCopy(std::vector<int>(64, -1));
  Launcher("BlockOrderKernel", 64, 32) (&BlockOrderKernel)(counter, d);
  std::vector<int> order = HostCopy(d, 64);
  std::vector<int> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 64; ++i) ASSERT_EQ(sorted[i], i);  // every block ran once
  EXPECT_NE(order, sorted);                              // not in index order
  cudaFree(counter);
  cudaFree(d);
}

TEST(CudaEmu, HalfAndBf16ConversionsRoundToNearestEven) {
  EXPECT_EQ(__half2float(__float2half_rn(1.0f)), 1.0f);
  EXPECT_EQ(__half2float(__float2half_rn(65504.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(__half2float(__float2half_rn(70000.0f))));
  EXPECT_EQ(__half2float(__ushort_as_half(0x0001)), std::ldexp(1.0f, -24));
  EXPECT_EQ(__half_as_ushort(__float2half_rn(std::ldexp(1.0f, -24))), 0x0001);
  // 1 + 2^-11 is halfway between two halves: ties to even (1.0).
  EXPECT_EQ(__half2float(__float2half_rn(1.0f + std::ldexp(1.0f, -11))), 1.0f);
  EXPECT_EQ(__bfloat16_as_ushort(__float2bfloat16_rn(1.0f)), 0x3f80);
  // 1 + 2^-8 is halfway between two bf16 values: ties to even (1.0).
  EXPECT_EQ(__bfloat162float(__float2bfloat16_rn(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  EXPECT_EQ(__bfloat162float(__float2bfloat16_rn(1.0f + 3 * std::ldexp(1.0f, -8))),
            1.0f + std::ldexp(1.0f, -6));
}

}  // namespace
