// The CUDA emulator's asynchronous streams (streams.h): work runs when it is
// waited for, in stream order, with only the cross-stream ordering CUDA
// promises (legacy vs blocking vs non-blocking streams, events), and
// pageable copies that must outlive their stream position, and host work in
// graphs.
#include <cuda_runtime.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace {

using ::tpserve_emu::Launcher;

__global__ void CopyKernel(const int* in, int* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[i];
}

__global__ void IncrementKernel(int* x) {
  if (threadIdx.x == 0) ++*x;
}

int* DeviceInts(int n) {
  int* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, n * sizeof(int)), cudaSuccess);
  return d;
}

// The value a kernel on `stream` reads from a buffer that a pageable
// cudaMemcpy (legacy stream) filled just before.
int ReadAfterLegacyUpload(unsigned flags) {
  cudaStream_t s;
  EXPECT_EQ(cudaStreamCreateWithFlags(&s, flags), cudaSuccess);
  int* in = DeviceInts(1);
  int* out = DeviceInts(1);
  const int value = 42;
  EXPECT_EQ(cudaMemcpy(in, &value, sizeof(value), cudaMemcpyHostToDevice), cudaSuccess);
  Launcher("CopyKernel", 1, 32, 0, s) (&CopyKernel)(in, out, 1);
  EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  // A pinned destination on the same stream: nothing here syncs the legacy stream.
  int* host = nullptr;
  EXPECT_EQ(cudaMallocHost(reinterpret_cast<void**>(&host), sizeof(int)), cudaSuccess);
  EXPECT_EQ(cudaMemcpyAsync(host, out, sizeof(int), cudaMemcpyDeviceToHost, s), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  const int seen = *host;
  cudaFreeHost(host);
  cudaFree(in);
  cudaFree(out);
  cudaStreamDestroy(s);
  return seen;
}

TEST(CudaEmuStreams, BlockingStreamsWaitForLegacyStreamWork) {
  EXPECT_EQ(ReadAfterLegacyUpload(cudaStreamDefault), 42);
}

TEST(CudaEmuStreams, NonBlockingStreamsDoNotWaitForLegacyStreamWork) {
  // The upload lands when the legacy stream runs, after the kernel read the
  // fresh (NaN-poisoned) buffer: what a device may do.
  EXPECT_EQ(ReadAfterLegacyUpload(cudaStreamNonBlocking), -1);
}

TEST(CudaEmuStreams, EventsOrderNonBlockingStreams) {
  cudaStream_t a, b;
  ASSERT_EQ(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
  cudaEvent_t uploaded;
  ASSERT_EQ(cudaEventCreate(&uploaded), cudaSuccess);
  int* in = DeviceInts(64);
  int* out = DeviceInts(64);
  std::vector<int> host(64);
  for (int i = 0; i < 64; ++i) host[i] = i * 3;
  ASSERT_EQ(cudaMemcpyAsync(in, host.data(), 64 * sizeof(int), cudaMemcpyHostToDevice, a),
            cudaSuccess);
  ASSERT_EQ(cudaEventRecord(uploaded, a), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(b, uploaded, 0), cudaSuccess);
  Launcher("CopyKernel", 2, 32, 0, b) (&CopyKernel)(in, out, 64);
  EXPECT_EQ(cudaStreamQuery(a), cudaSuccess);  // runs a's upload
  ASSERT_EQ(cudaStreamSynchronize(b), cudaSuccess);
  std::vector<int> back(64);
  ASSERT_EQ(cudaMemcpy(back.data(), out, 64 * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, host);
  cudaEventDestroy(uploaded);
  cudaFree(in);
  cudaFree(out);
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
}

// Host work that is not ready until `open` (an emulated collective waiting
// for a peer), then counts its run in `ran`.
::tpserve_emu::StreamWork NotReadyUntil(std::shared_ptr<std::atomic<bool>> open,
                                        std::shared_ptr<std::atomic<int>> ran) {
  return [open, ran] {
    if (!open->load()) return false;
    ++*ran;
    return true;
  };
}

TEST(CudaEmuStreams, WorkRunsWhenWaitedForNotWhenEnqueued) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  auto ran = std::make_shared<std::atomic<int>>(0);
  auto open = std::make_shared<std::atomic<bool>>(false);
  // Host work that is not ready until `open` (an emulated collective waiting for a peer).
  ASSERT_EQ(::tpserve_emu::EnqueueHostWork(s, [ran, open] { return NotReadyUntil(open, ran); }),
            cudaSuccess);
  EXPECT_EQ(ran->load(), 0);
  EXPECT_EQ(cudaStreamQuery(s), cudaErrorNotReady);
  open->store(true);
  EXPECT_EQ(cudaStreamQuery(s), cudaSuccess);
  EXPECT_EQ(ran->load(), 1);
  cudaStreamDestroy(s);
}

// Host work captured in a graph is made afresh at each launch, in launch
// order (what lets an emulated collective take its place in the rank's
// sequence per replay), and a launch whose host node is not ready leaves the
// stream not ready at once instead of holding the querying thread, then goes
// on from that node: the kernel before it runs once per launch.
TEST(CudaEmuStreams, GraphLaunchesMakeHostWorkAfreshAndWaitAtNotReadyNodes) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  int* counter = DeviceInts(1);
  ASSERT_EQ(cudaMemsetAsync(counter, 0, sizeof(int), s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  auto made = std::make_shared<std::vector<int>>();  // launch order of the makes
  auto ran = std::make_shared<std::atomic<int>>(0);
  auto open = std::make_shared<std::atomic<bool>>(false);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  Launcher("IncrementKernel", 1, 32, 0, s) (&IncrementKernel)(counter);
  ASSERT_EQ(::tpserve_emu::EnqueueHostWork(s,
                                           [made, open, ran] {
                                             made->push_back(static_cast<int>(made->size()));
                                             return NotReadyUntil(open, ran);
                                           }),
            cudaSuccess);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  EXPECT_TRUE(made->empty());  // recorded, not made
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  EXPECT_EQ(*made, (std::vector<int>{0, 1}));  // one make per launch, when launched
  // A second thread opens the node later; the query must not wait for it.
  std::thread opener([open] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    open->store(true);
  });
  EXPECT_EQ(cudaStreamQuery(s), cudaErrorNotReady);
  EXPECT_FALSE(open->load()) << "cudaStreamQuery waited for the not-ready node";
  opener.join();
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(ran->load(), 2);
  int host = 0;
  ASSERT_EQ(cudaMemcpy(&host, counter, sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(host, 2);  // resumed at the node: the kernel before it ran once per launch
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaFree(counter);
  cudaStreamDestroy(s);
}

TEST(CudaEmuStreams, PageableSourceFreedBeforeItsCopyRanAborts) {
#if defined(__SANITIZE_THREAD__)
  // TSan's allocator leaves freed blocks unchanged: the emulator sees the
  // free only through the bytes glibc's allocator writes into the block.
  GTEST_SKIP() << "skipped: freed pageable sources are found through glibc's allocator only";
#endif
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  int* d = DeviceInts(16);
  EXPECT_DEATH(
      {
        auto host = std::make_unique<std::vector<int>>(16, 7);
        cudaMemcpyAsync(d, host->data(), 16 * sizeof(int), cudaMemcpyHostToDevice, s);
        host.reset();  // freed while the copy is still queued
        cudaStreamSynchronize(s);
      },
      "was changed or freed before the copy ran");
  cudaFree(d);
  cudaStreamDestroy(s);
}

TEST(CudaEmuStreams, PinnedSourceIsReadWhenTheCopyRuns) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  int* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), sizeof(int)), cudaSuccess);
  int* d = DeviceInts(1);
  *pinned = 1;
  ASSERT_EQ(cudaMemcpyAsync(d, pinned, sizeof(int), cudaMemcpyHostToDevice, s), cudaSuccess);
  *pinned = 2;  // the DMA has not read it yet
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  int back = 0;
  ASSERT_EQ(cudaMemcpy(&back, d, sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, 2);
  cudaFree(d);
  cudaFreeHost(pinned);
  cudaStreamDestroy(s);
}

}  // namespace
