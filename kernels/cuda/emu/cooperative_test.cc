// The CUDA emulator's cooperative launches (emu.h, grid.h): every block of
// such a grid runs at once, grid.sync() holds each until all have arrived,
// and the launch limits and misuses the device has are reported.
#include <cuda_runtime.h>

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/emu/test_util.h"

namespace {

using ::tpserve_emu::Launcher;
using ::tpserve_emu::test::DeviceCopy;
using ::tpserve_emu::test::HostCopy;

constexpr int kBlocks = 8;
constexpr int kThreads = 64;
constexpr int kLive = 48;  // threads of a block that take part; the rest exit at once
constexpr int kRounds = 5;

// Round r: thread i writes r * 1000 + i to buf[i], then, after a grid
// barrier, reads the value a thread of another block wrote (a block never
// reads its own) and counts it in bad[i] if it is not that round's; a second
// barrier keeps the next round's writes from overtaking the reads.
__global__ void RoundsKernel(int* buf, int* bad) {
  if (static_cast<int>(threadIdx.x) >= kLive) return;  // exited threads count as arrived
  const int i = blockIdx.x * kThreads + threadIdx.x;
  const int n = gridDim.x * kThreads;
  for (int r = 0; r < kRounds; ++r) {
    buf[i] = r * 1000 + i;
    ::tpserve_emu::GridSync();
    const int j = (i + (1 + r % (gridDim.x - 1)) * kThreads) % n;
    if (buf[j] != r * 1000 + j) ++bad[i];
    ::tpserve_emu::GridSync();
  }
}

void LaunchRounds(int* buf, int* bad, cudaStream_t stream) {
  Launcher("RoundsKernel", kBlocks, kThreads, 0, stream, false,
           /*cooperative=*/true) (&RoundsKernel)(buf, bad);
}

TEST(CudaEmuCooperative, GridSyncShowsEveryBlocksWrites) {
  const int n = kBlocks * kThreads;
  int* buf = DeviceCopy(std::vector<int>(n, -1));
  int* bad = DeviceCopy(std::vector<int>(n, 0));
  LaunchRounds(buf, bad, nullptr);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<int> counts = HostCopy(bad, n);
  const std::vector<int> last = HostCopy(buf, n);
  for (int i = 0; i < n; ++i) {
    const bool live = i % kThreads < kLive;
    EXPECT_EQ(counts[i], 0) << "thread " << i;
    EXPECT_EQ(last[i], live ? (kRounds - 1) * 1000 + i : -1) << "thread " << i;
  }
  cudaFree(buf);
  cudaFree(bad);
}

TEST(CudaEmuCooperative, CapturedInAGraphAndReplayed) {
  const int n = kBlocks * kThreads;
  int* buf = DeviceCopy(std::vector<int>(n, -1));
  int* bad = DeviceCopy(std::vector<int>(n, 0));
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  LaunchRounds(buf, bad, s);
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph), cudaSuccess);
  for (int replay = 0; replay < 3; ++replay) ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(HostCopy(bad, n), std::vector<int>(n, 0));
  EXPECT_EQ(tpserve_emu::GridsRun("RoundsKernel") >= 3, true);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
  cudaFree(buf);
  cudaFree(bad);
}

// RefuseCooperativeLaunches: kInCapture refuses a launch into a capturing
// stream and invalidates the capture, and lets eager ones run; kAlways
// refuses those too; kNone lets both run again.
TEST(CudaEmuCooperative, RefusedLaunchesFailAsTheDriverWould) {
  using ::tpserve_emu::CooperativeRefusal;
  const int n = kBlocks * kThreads;
  int* buf = DeviceCopy(std::vector<int>(n, -1));
  int* bad = DeviceCopy(std::vector<int>(n, 0));
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  const uint64_t before = tpserve_emu::GridsRun("RoundsKernel");
  // Capture one launch; the launch's error and the capture's end.
  auto captured = [&](cudaError_t* launched) {
    cudaGraph_t graph = nullptr;
    EXPECT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    LaunchRounds(buf, bad, s);
    *launched = cudaGetLastError();
    const cudaError_t end = cudaStreamEndCapture(s, &graph);
    if (graph != nullptr) cudaGraphDestroy(graph);
    (void)cudaGetLastError();  // a failed end is the thread's last error too
    return end;
  };
  cudaError_t launched = cudaSuccess;
  tpserve_emu::RefuseCooperativeLaunches(CooperativeRefusal::kInCapture);
  EXPECT_EQ(captured(&launched), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(launched, cudaErrorStreamCaptureUnsupported);
  LaunchRounds(buf, bad, s);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(tpserve_emu::GridsRun("RoundsKernel") - before, 1u);

  tpserve_emu::RefuseCooperativeLaunches(CooperativeRefusal::kAlways);
  LaunchRounds(buf, bad, s);
  EXPECT_EQ(cudaGetLastError(), cudaErrorCooperativeLaunchTooLarge);
  EXPECT_EQ(captured(&launched), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(launched, cudaErrorStreamCaptureUnsupported);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(tpserve_emu::GridsRun("RoundsKernel") - before, 1u);

  tpserve_emu::RefuseCooperativeLaunches(CooperativeRefusal::kNone);
  EXPECT_EQ(captured(&launched), cudaSuccess);
  EXPECT_EQ(launched, cudaSuccess);
  LaunchRounds(buf, bad, s);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(tpserve_emu::GridsRun("RoundsKernel") - before, 2u);
  EXPECT_EQ(HostCopy(bad, n), std::vector<int>(n, 0));
  cudaStreamDestroy(s);
  cudaFree(buf);
  cudaFree(bad);
}

__global__ void NoopKernel() {}

// The default emulated part is an sm_80 with one SM: 2048 threads, 32
// blocks and 164 KiB of shared memory (1 KiB reserved per block).
TEST(CudaEmuCooperative, OccupancyAndTheLargestGrid) {
  int per_sm = -1;
  ASSERT_EQ(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, NoopKernel, 256, 0),
            cudaSuccess);
  EXPECT_EQ(per_sm, 8);  // threads
  ASSERT_EQ(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, NoopKernel, 32, 0), cudaSuccess);
  EXPECT_EQ(per_sm, 32);  // blocks
  ASSERT_EQ(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, NoopKernel, 64, 40 * 1024),
            cudaSuccess);
  EXPECT_EQ(per_sm, 4);  // 167936 / (40960 + 1024)
  ASSERT_EQ(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, NoopKernel, 64, 64 * 1024),
            cudaSuccess);
  EXPECT_EQ(per_sm, 0);  // over 48 KiB without the opt-in attribute
  int cooperative = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, 0), cudaSuccess);
  EXPECT_EQ(cooperative, 1);

  Launcher("NoopKernel", 2, 1024, 0, nullptr, false, true) (&NoopKernel)();
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  Launcher("NoopKernel", 3, 1024, 0, nullptr, false, true) (&NoopKernel)();
  EXPECT_EQ(cudaGetLastError(), cudaErrorCooperativeLaunchTooLarge);
  Launcher("NoopKernel", 3, 1024) (&NoopKernel)();  // not cooperative: any grid
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  cudaDeviceSynchronize();
}

__global__ void SyncKernel() { ::tpserve_emu::GridSync(); }

TEST(CudaEmuCooperative, GridSyncOutsideACooperativeLaunchAborts) {
  EXPECT_DEATH(
      {
        Launcher("SyncKernel", 2, 32) (&SyncKernel)();
        cudaDeviceSynchronize();
      },
      "not launched cooperatively");
}

// Two rounds: each block writes its slot, and after a grid barrier reads
// the next block's, with __ldg (`nc`) or a plain load.
__global__ void HandOffKernel(int* slots, int* seen, bool nc) {
  const int b = blockIdx.x, next = (b + 1) % gridDim.x;
  for (int round = 0; round < 2; ++round) {
    if (threadIdx.x == 0) slots[b] = round * 100 + b;
    ::tpserve_emu::GridSync();
    if (threadIdx.x == 0) seen[round * gridDim.x + b] = nc ? __ldg(slots + next) : slots[next];
    ::tpserve_emu::GridSync();
  }
}

void LaunchHandOff(bool nc, std::vector<int>* seen) {
  int* slots = DeviceCopy(std::vector<int>(kBlocks, -1));
  int* d_seen = DeviceCopy(std::vector<int>(2 * kBlocks, -1));
  Launcher("HandOffKernel", kBlocks, 32, 0, nullptr, false, true) (&HandOffKernel)(slots, d_seen,
                                                                                   nc);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  *seen = HostCopy(d_seen, 2 * kBlocks);
  cudaFree(slots);
  cudaFree(d_seen);
}

// Plain loads after grid.sync see the other blocks' writes.
TEST(CudaEmuCooperative, PlainLoadsReadWhatOtherBlocksWrote) {
  std::vector<int> seen;
  LaunchHandOff(false, &seen);
  for (int round = 0; round < 2; ++round) {
    for (int b = 0; b < kBlocks; ++b) {
      EXPECT_EQ(seen[round * kBlocks + b], round * 100 + (b + 1) % kBlocks);
    }
  }
}

// Death tests whose child starts threads (a cooperative grid's blocks):
// re-executed, not only forked, so ThreadSanitizer builds allow them.
class CudaEmuCooperativeDeath : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

// Block 0 returns; the others wait at a barrier it never reaches.
__global__ void EarlyExitKernel() {
  if (blockIdx.x == 0) return;
  ::tpserve_emu::GridSync();
}

TEST_F(CudaEmuCooperativeDeath, ABlockEndingWhileOthersWaitAborts) {
  EXPECT_DEATH(
      {
        Launcher("EarlyExitKernel", 4, 32, 0, nullptr, false, true) (&EarlyExitKernel)();
        cudaDeviceSynchronize();
      },
      "would hang");
}

// __ldg of memory the same cooperative launch writes (here: after the
// read) is outside the PTX memory model: the emulator aborts at the grid's end.
TEST_F(CudaEmuCooperativeDeath, NonCoherentReadOfMemoryTheGridWritesAborts) {
  EXPECT_DEATH(
      {
        std::vector<int> seen;
        LaunchHandOff(true, &seen);
      },
      "an __ldg \\(ld.global.nc\\) read 4 bytes at .* that the same cooperative launch then "
      "wrote");
}

// Half of block 0's threads wait at grid.sync(), the rest at __syncthreads.
__global__ void MixedBarrierKernel() {
  if (blockIdx.x == 0 && threadIdx.x >= 16) {
    __syncthreads();
  } else {
    ::tpserve_emu::GridSync();
  }
}

TEST_F(CudaEmuCooperativeDeath, MixedBarriersAbortWithTheThreadsNamed) {
  EXPECT_DEATH(
      {
        Launcher("MixedBarrierKernel", 2, 32, 0, nullptr, false, true) (&MixedBarrierKernel)();
        cudaDeviceSynchronize();
      },
      "deadlock.*grid.sync");
}

}  // namespace
