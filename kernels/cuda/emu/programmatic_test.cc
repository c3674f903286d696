// The CUDA emulator's programmatic dependent launch (emu.h, grid.h,
// streams.h): a grid launched programmatically right after another runs its
// first kProgrammaticBlocks blocks up to griddepcontrol.wait before that
// grid, so a read before the wait sees what was there before the primary
// ran; after the wait every block sees the primary's writes.
#include <cuda_runtime.h>

#include <vector>

#include "gtest/gtest.h"

namespace {

using ::tpserve_emu::kProgrammaticBlocks;
using ::tpserve_emu::kProgrammaticChain;
using ::tpserve_emu::Launcher;

constexpr int kBlocks = 8;
constexpr int kThreads = 32;
constexpr int kN = kBlocks * kThreads;

__global__ void FillKernel(int* buf, int value) {
  buf[blockIdx.x * blockDim.x + threadIdx.x] = value;
}

// early[i] = buf[i] before the wait, late[i] = buf[i] after it.
__global__ void ReadAroundWaitKernel(const int* buf, int* early, int* late) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  early[i] = buf[i];
  ::tpserve_emu::GridDependencyWait();
  late[i] = buf[i];
}

int* DeviceInts(int n, int value) {
  int* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, n * sizeof(int)), cudaSuccess);
  std::vector<int> host(n, value);
  EXPECT_EQ(cudaMemcpy(d, host.data(), n * sizeof(int), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}

std::vector<int> Host(const int* d, int n) {
  std::vector<int> out(n);
  EXPECT_EQ(cudaMemcpy(out.data(), d, n * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  return out;
}

// Blocks (of kThreads) whose every value equals `v`.
int BlocksAll(const std::vector<int>& values, int v) {
  int blocks = 0;
  for (int b = 0; b < kBlocks; ++b) {
    bool all = true;
    for (int t = 0; t < kThreads; ++t) all = all && values[b * kThreads + t] == v;
    blocks += all;
  }
  return blocks;
}

struct Buffers {
  int* buf = DeviceInts(kN, 0);
  int* early = DeviceInts(kN, -1);
  int* late = DeviceInts(kN, -1);
  ~Buffers() {
    cudaFree(buf);
    cudaFree(early);
    cudaFree(late);
  }
};

// Fill (not programmatic), then the reader, on a fresh stream; between them
// `between` runs (or nothing). Blocking streams: the uploads DeviceInts made
// on the legacy stream land first.
template <typename Between>
void FillThenRead(const Buffers& b, bool programmatic, Between between) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  Launcher("FillKernel", kBlocks, kThreads, 0, s) (&FillKernel)(b.buf, 1);
  between(s);
  Launcher("ReadAroundWaitKernel", kBlocks, kThreads, 0, s, programmatic) (&ReadAroundWaitKernel)(
      b.buf, b.early, b.late);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  ASSERT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

TEST(CudaEmuProgrammatic, FirstBlocksReadBeforeThePrimaryUntilTheyWait) {
  Buffers b;
  FillThenRead(b, /*programmatic=*/true, [](cudaStream_t) {});
  EXPECT_EQ(BlocksAll(Host(b.early, kN), 0), kProgrammaticBlocks);
  EXPECT_EQ(BlocksAll(Host(b.early, kN), 1), kBlocks - kProgrammaticBlocks);
  EXPECT_EQ(BlocksAll(Host(b.late, kN), 1), kBlocks);
}

TEST(CudaEmuProgrammatic, PlainLaunchesWaitForTheWholePreviousGrid) {
  Buffers b;
  FillThenRead(b, /*programmatic=*/false, [](cudaStream_t) {});
  EXPECT_EQ(BlocksAll(Host(b.early, kN), 1), kBlocks);
  EXPECT_EQ(BlocksAll(Host(b.late, kN), 1), kBlocks);
}

TEST(CudaEmuProgrammatic, OtherWorkOrARecordedEventInBetweenOrdersFully) {
  // Only kernel-to-kernel dependencies are programmatic; an event recorded
  // after the primary may be waited for alone.
  Buffers b;
  cudaEvent_t e;
  ASSERT_EQ(cudaEventCreate(&e), cudaSuccess);
  FillThenRead(b, true, [&](cudaStream_t s) { ASSERT_EQ(cudaEventRecord(e, s), cudaSuccess); });
  EXPECT_EQ(BlocksAll(Host(b.early, kN), 1), kBlocks);
  cudaEventDestroy(e);
  Buffers c;
  int* other = DeviceInts(1, 0);
  FillThenRead(c, true,
               [&](cudaStream_t s) { ASSERT_EQ(cudaMemsetAsync(other, 0, 4, s), cudaSuccess); });
  EXPECT_EQ(BlocksAll(Host(c.early, kN), 1), kBlocks);
  cudaFree(other);
}

// Grid g of a chain: reads every earlier grid's flag before and after its
// wait; its block 0 then sets its own. seen[g][j] / after[g][j]: flag j as grid g saw it
// (summed over its blocks' thread 0).
__global__ void ChainKernel(int* flags, int* seen, int* after, int g, int grids) {
  if (threadIdx.x == 0) {
    for (int j = 0; j < g; ++j) atomicAdd(&seen[g * grids + j], flags[j]);
  }
  ::tpserve_emu::GridDependencyWait();
  if (threadIdx.x == 0) {
    for (int j = 0; j < g; ++j) atomicAdd(&after[g * grids + j], flags[j]);
  }
  if (threadIdx.x == 0 && blockIdx.x == 0) flags[g] = 1;
}

TEST(CudaEmuProgrammatic, ChainsRunEachGridBeforeAllItsPrimaries) {
  // kProgrammaticChain programmatic grids after a plain one: the first fill
  // chain holds kProgrammaticChain grids (grids 0..2); grid 3 is after the
  // whole chain, and grid 4 starts a new chain behind grid 3.
  constexpr int kGrids = 5;
  static_assert(kProgrammaticChain == 3, "the expectations below are for chains of 3");
  int* flags = DeviceInts(kGrids, 0);
  int* seen = DeviceInts(kGrids * kGrids, 0);
  int* after = DeviceInts(kGrids * kGrids, 0);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  for (int g = 0; g < kGrids; ++g) {
    Launcher("ChainKernel", kBlocks, kThreads, 0, s, /*programmatic=*/g > 0) (&ChainKernel)(
        flags, seen, after, g, kGrids);
  }
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  const std::vector<int> before_wait = Host(seen, kGrids * kGrids);
  const std::vector<int> after_wait = Host(after, kGrids * kGrids);
  const int late = kBlocks - kProgrammaticBlocks;  // blocks that start after the primary
  // Grid 1 (chain 0-1-2): its parked blocks ran before grid 0.
  EXPECT_EQ(before_wait[1 * kGrids + 0], late);
  // Grid 2: its parked blocks ran before grids 0 and 1 (grid 1's parked
  // blocks ran inside them, before grid 0).
  EXPECT_EQ(before_wait[2 * kGrids + 0], late);
  EXPECT_EQ(before_wait[2 * kGrids + 1], late);
  // Grid 3 follows the full chain: it sees everything, before and after.
  EXPECT_EQ(before_wait[3 * kGrids + 0], kBlocks);
  EXPECT_EQ(before_wait[3 * kGrids + 2], kBlocks);
  // Grid 4 took grid 3 as its primary.
  EXPECT_EQ(before_wait[4 * kGrids + 3], late);
  EXPECT_EQ(before_wait[4 * kGrids + 2], kBlocks);
  for (int g = 1; g < kGrids; ++g) {
    for (int j = 0; j < g; ++j) EXPECT_EQ(after_wait[g * kGrids + j], kBlocks) << g << " " << j;
  }
  cudaFree(flags);
  cudaFree(seen);
  cudaFree(after);
  cudaStreamDestroy(s);
}

TEST(CudaEmuProgrammatic, GraphsKeepTheOrderAtEveryLaunch) {
  Buffers b;
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  Launcher("FillKernel", kBlocks, kThreads, 0, s) (&FillKernel)(b.buf, 1);
  Launcher("ReadAroundWaitKernel", kBlocks, kThreads, 0, s, true) (&ReadAroundWaitKernel)(
      b.buf, b.early, b.late);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int launch = 0; launch < 2; ++launch) {
    ASSERT_EQ(cudaMemsetAsync(b.buf, 0, kN * sizeof(int), s), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    EXPECT_EQ(BlocksAll(Host(b.early, kN), 0), kProgrammaticBlocks) << "launch " << launch;
    EXPECT_EQ(BlocksAll(Host(b.late, kN), 1), kBlocks) << "launch " << launch;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

// Shared memory written before the wait must hold across it, while the
// primary (the same kernel: the same static __shared__ variable on this OS
// thread) runs its own blocks. ok[i] = 1 where thread i read back its value.
__global__ void SharedAcrossWaitKernel(int* ok) {
  __shared__ int tile[kThreads];
  static thread_local ::tpserve_emu::StaticShared registered(&tile, sizeof(tile));
  int* dyn = ::tpserve_emu::DynamicShared<int>();
  const int mine = static_cast<int>(blockIdx.x * 1000 + threadIdx.x);
  tile[threadIdx.x] = mine;
  dyn[threadIdx.x] = -mine;
  ::tpserve_emu::GridDependencyWait();
  ok[blockIdx.x * blockDim.x + threadIdx.x] =
      tile[threadIdx.x] == mine && dyn[threadIdx.x] == -mine;
}

TEST(CudaEmuProgrammatic, SharedMemoryOfParkedBlocksSurvivesThePrimary) {
  int* first = DeviceInts(kN, 0);
  int* second = DeviceInts(kN, 0);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  Launcher("SharedAcrossWaitKernel", kBlocks, kThreads, kThreads * sizeof(int),
           s) (&SharedAcrossWaitKernel)(first);
  Launcher("SharedAcrossWaitKernel", kBlocks, kThreads, kThreads * sizeof(int), s,
           true) (&SharedAcrossWaitKernel)(second);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(BlocksAll(Host(first, kN), 1), kBlocks);
  EXPECT_EQ(BlocksAll(Host(second, kN), 1), kBlocks);
  cudaFree(first);
  cudaFree(second);
  cudaStreamDestroy(s);
}

}  // namespace
