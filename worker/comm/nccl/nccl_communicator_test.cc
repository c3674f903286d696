// NcclCommunicator on the GPUs this machine has: one rank per device (up to
// 4), each in its own thread, rendezvousing through an in-process
// TcpKvStoreServer on port 0. Also checks that a peer that never joins turns
// into DEADLINE_EXCEEDED within the timeout instead of a hang, that
// Abort() from another thread ends a wait for a peer at once, and that
// collectives captured in CUDA graphs pair across ranks on every replay.
// Without a device every test reports "skipped: no CUDA device". The _emu
// twin runs the same code on the CUDA emulator's in-process NCCL
// (kernels/cuda/emu/nccl_emu.cc) with four emulated devices.
#include "worker/comm/nccl/nccl_communicator.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "kernels/cuda/device.h"
#include "rendezvous/tcp_kv_store.h"

namespace tpserve {
namespace {

#define TPS_SKIP_WITHOUT_CUDA()                                                                  \
  do {                                                                                           \
    if (::tpserve::kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device"; \
  } while (false)

// Runs rank r's collectives on device r and checks their results.
void RunRank(int port, int rank, int world, std::vector<std::string>* errors) {
  auto fail = [&](const std::string& what) { (*errors)[rank] = what; };
  TcpKvStoreClient store("127.0.0.1", port);
  NcclOptions opts;
  opts.device = rank;
  opts.timeout = absl::Seconds(60);
  opts.prefix = "test/collectives";
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      CreateNcclCommunicator(store, rank, world, opts);
  if (!comm.ok()) return fail(comm.status().ToString());
  if ((*comm)->backend() != "nccl" || (*comm)->rank() != rank || (*comm)->world_size() != world) {
    return fail("wrong identity");
  }
  cudaSetDevice(rank);
  const size_t n = 1001;
  std::vector<float> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<float>(rank + 1) * static_cast<float>(i % 7);
  float* d = nullptr;
  float* gathered = nullptr;
  if (cudaMalloc(&d, n * sizeof(float)) != cudaSuccess ||
      cudaMalloc(&gathered, n * world * sizeof(float)) != cudaSuccess) {
    return fail("cudaMalloc");
  }
  cudaMemcpy(d, host.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  // The collectives run on the communicator's non-blocking stream, which is
  // not ordered after the legacy stream the copy lands on.
  cudaDeviceSynchronize();
  absl::Status s = (*comm)->AllReduceSum(d, n, CommDType::kF32);
  if (s.ok()) s = (*comm)->Synchronize(nullptr);
  std::vector<float> back(n);
  cudaMemcpy(back.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost);
  const float ranks_sum = static_cast<float>(world * (world + 1) / 2);
  for (size_t i = 0; s.ok() && i < n; ++i) {
    if (back[i] != ranks_sum * static_cast<float>(i % 7))
      s = absl::InternalError("all-reduce value");
  }
  // All-gather of the reduced buffer: every slice equals it.
  if (s.ok()) s = (*comm)->AllGather(d, gathered, n, CommDType::kF32);
  if (s.ok()) s = (*comm)->Synchronize(nullptr);
  std::vector<float> all(n * world);
  cudaMemcpy(all.data(), gathered, all.size() * sizeof(float), cudaMemcpyDeviceToHost);
  for (size_t i = 0; s.ok() && i < all.size(); ++i) {
    if (all[i] != back[i % n]) s = absl::InternalError("all-gather value");
  }
  // Broadcast from the last rank.
  const float mark = static_cast<float>(rank);
  cudaMemcpy(d, &mark, sizeof(float), cudaMemcpyHostToDevice);
  cudaDeviceSynchronize();
  if (s.ok()) s = (*comm)->Broadcast(d, 1, CommDType::kF32, world - 1);
  if (s.ok()) s = (*comm)->Synchronize(nullptr);
  float got = -1.0f;
  cudaMemcpy(&got, d, sizeof(float), cudaMemcpyDeviceToHost);
  if (s.ok() && got != static_cast<float>(world - 1)) s = absl::InternalError("broadcast value");
  if (s.ok()) s = (*comm)->Barrier();
  cudaFree(d);
  cudaFree(gathered);
  if (!s.ok()) fail(s.ToString());
}

TEST(NcclCommunicatorTest, CollectivesAcrossLocalDevices) {
  TPS_SKIP_WITHOUT_CUDA();
  const int world = std::min(kernels::cuda::DeviceCount(), 4);
  TcpKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  std::vector<std::string> errors(world);
  std::vector<std::thread> ranks;
  for (int r = 0; r < world; ++r) ranks.emplace_back(RunRank, server.port(), r, world, &errors);
  for (std::thread& t : ranks) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[r], "") << "rank " << r << " of " << world;
}

TEST(NcclCommunicatorTest, MissingPeerTimesOutInsteadOfHanging) {
  TPS_SKIP_WITHOUT_CUDA();
  TcpKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  TcpKvStoreClient store("127.0.0.1", server.port());
  NcclOptions opts;
  opts.timeout = absl::Seconds(3);
  opts.prefix = "test/missing_peer";
  const absl::Time start = absl::Now();
  // Rank 0 of 2; rank 1 never starts.
  absl::StatusOr<std::unique_ptr<Communicator>> comm = CreateNcclCommunicator(store, 0, 2, opts);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kDeadlineExceeded) << comm.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
}

// Rank 0 starts a collective rank 1 never joins; a watchdog thread aborts
// rank 0's communicator. The collective (its enqueue, or the wait for it)
// ends with an error at once, not at the 20 s timeout: the communicator does
// not hold its lock while it waits.
TEST(NcclCommunicatorTest, AbortFromAnotherThreadEndsAWaitForAPeer) {
  TPS_SKIP_WITHOUT_CUDA();
  if (kernels::cuda::DeviceCount() < 2) GTEST_SKIP() << "skipped: needs 2 CUDA devices";
  TcpKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  std::unique_ptr<Communicator> comms[2];
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      TcpKvStoreClient store("127.0.0.1", server.port());
      NcclOptions opts;
      opts.device = r;
      opts.timeout = absl::Seconds(20);
      opts.prefix = "test/abort";
      absl::StatusOr<std::unique_ptr<Communicator>> c = CreateNcclCommunicator(store, r, 2, opts);
      if (c.ok()) comms[r] = *std::move(c);
    });
  }
  for (std::thread& t : ranks) t.join();
  ASSERT_NE(comms[0], nullptr);
  ASSERT_NE(comms[1], nullptr);
  cudaSetDevice(0);
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 64 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemset(d, 0, 64 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::thread watchdog([&] {
    absl::SleepFor(absl::Milliseconds(300));
    comms[0]->Abort();
  });
  const absl::Time start = absl::Now();
  absl::Status s = comms[0]->AllReduceSum(d, 64, CommDType::kF32);
  if (s.ok()) s = comms[0]->Synchronize(nullptr);
  const absl::Duration took = absl::Now() - start;
  watchdog.join();
  EXPECT_FALSE(s.ok());
  EXPECT_LT(took, absl::Seconds(5)) << s;
  comms[1]->Abort();
  comms[0].reset();
  comms[1].reset();
  cudaFree(d);
}

// One rank of CollectivesCapturedInAGraphPairOnEveryReplay: an eager
// all-reduce, then a graph holding one all-reduce launched 3 times back to
// back, an eager one, and the graph once more; one Synchronize at the end.
// Every all-reduce is in place, so each multiplies the (by then equal)
// buffers by the world size.
absl::Status RunCapturedRank(int port, int rank, int world) {
  TcpKvStoreClient store("127.0.0.1", port);
  NcclOptions opts;
  opts.device = rank;
  opts.timeout = absl::Seconds(60);
  opts.prefix = "test/graphs";
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm,
                       CreateNcclCommunicator(store, rank, world, opts));
  cudaSetDevice(rank);
  cudaStream_t s = nullptr;
  float* d = nullptr;
  const size_t n = 257;
  if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess ||
      cudaMalloc(&d, n * sizeof(float)) != cudaSuccess) {
    return absl::InternalError("cudaStreamCreate or cudaMalloc");
  }
  std::vector<float> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<float>((rank + 1) * (i % 5 + 1));
  cudaMemcpyAsync(d, host.data(), n * sizeof(float), cudaMemcpyHostToDevice, s);
  const CollectiveOptions on_s{.stream = s};
  TPS_RETURN_IF_ERROR(comm->AllReduceSum(d, n, CommDType::kF32, on_s));
  TPS_RETURN_IF_ERROR(comm->Synchronize(s));
  if (cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    return absl::InternalError("cudaStreamBeginCapture");
  }
  const absl::Status captured = comm->AllReduceSum(d, n, CommDType::kF32, on_s);
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(s, &graph);
  TPS_RETURN_IF_ERROR(captured);
  cudaGraphExec_t exec = nullptr;
  if (ended != cudaSuccess || cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) {
    return absl::InternalError("capture or instantiate");
  }
  for (int i = 0; i < 3; ++i) cudaGraphLaunch(exec, s);
  TPS_RETURN_IF_ERROR(comm->AllReduceSum(d, n, CommDType::kF32, on_s));
  cudaGraphLaunch(exec, s);
  // Rank 0 waits a while before its stream runs, so its peers' replays run
  // ahead of its own.
  if (rank == 0) absl::SleepFor(absl::Milliseconds(100));
  TPS_RETURN_IF_ERROR(comm->Synchronize(s));
  std::vector<float> back(n);
  cudaMemcpyAsync(back.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost, s);
  cudaStreamSynchronize(s);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaFree(d);
  cudaStreamDestroy(s);
  const float ranks_sum = static_cast<float>(world * (world + 1) / 2);
  const float scale = std::pow(static_cast<float>(world), 5.0f);  // 5 more all-reduces
  for (size_t i = 0; i < n; ++i) {
    const float want = ranks_sum * static_cast<float>(i % 5 + 1) * scale;
    if (back[i] != want) {
      return absl::InternalError(absl::StrCat("element ", i, " is ", back[i], ", want ", want));
    }
  }
  return absl::OkStatus();
}

// NCCL collectives captured in a CUDA graph (what the CUDA engine's decode
// graphs hold at TP > 1) run once per launch and pair with the peers' launches
// of their graphs, mixed with eager collectives on the same communicator.
TEST(NcclCommunicatorTest, CollectivesCapturedInAGraphPairOnEveryReplay) {
  TPS_SKIP_WITHOUT_CUDA();
  if (kernels::cuda::DeviceCount() < 2) GTEST_SKIP() << "skipped: needs 2 CUDA devices";
  TcpKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  absl::Status status[2];
  std::thread r1([&] { status[1] = RunCapturedRank(server.port(), 1, 2); });
  status[0] = RunCapturedRank(server.port(), 0, 2);
  r1.join();
  EXPECT_TRUE(status[0].ok()) << status[0];
  EXPECT_TRUE(status[1].ok()) << status[1];
}

TEST(NcclCommunicatorTest, WorldSizeMismatchIsInvalidArgument) {
  TPS_SKIP_WITHOUT_CUDA();
  TcpKvStoreServer server;
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  TcpKvStoreClient store("127.0.0.1", server.port());
  // What a rank 0 started with world size 3 publishes.
  ASSERT_TRUE(store.Set("test/mismatch/unique_id", std::string(256, '0') + "/3").ok());
  NcclOptions opts;
  opts.prefix = "test/mismatch";
  opts.rendezvous_timeout = absl::Seconds(5);
  absl::StatusOr<std::unique_ptr<Communicator>> comm = CreateNcclCommunicator(store, 1, 2, opts);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kInvalidArgument) << comm.status();
}

}  // namespace
}  // namespace tpserve
