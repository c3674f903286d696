// All-reduce latency over NcclCommunicator, one rank per local GPU (threads
// in this process, rendezvous through an in-process TcpKvStoreServer). Each
// size is timed as AllReduceSum + Synchronize per iteration (what a
// tensor-parallel step waits for), and divided by the latency of a D2D
// cudaMemcpyAsync + synchronize of the same bytes measured in the same run
// (ratio: lower is better). Prints rows of scripts/gpu_check.sh's table.
//
//   nccl_bench              # world size = number of GPUs (at most 8)
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "kernels/cuda/bench_util.h"
#include "kernels/cuda/device.h"
#include "rendezvous/tcp_kv_store.h"
#include "worker/comm/nccl/nccl_communicator.h"

namespace tpserve {
namespace {

using kernels::cuda::Fmt;
using kernels::cuda::PrintRow;

constexpr int kIters = 50;
const size_t kSizes[] = {16 << 10, 1 << 20, 64 << 20};

double NowUs() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Mean microseconds of D2D copy + stream sync for `bytes` on device 0.
double CopyLatencyUs(size_t bytes) {
  cudaSetDevice(0);
  cudaStream_t s;
  cudaStreamCreate(&s);
  void *a = nullptr, *b = nullptr;
  cudaMalloc(&a, bytes);
  cudaMalloc(&b, bytes);
  for (int i = 0; i < 5; ++i) cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s);
  cudaStreamSynchronize(s);
  const double t0 = NowUs();
  for (int i = 0; i < kIters; ++i) {
    cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s);
    cudaStreamSynchronize(s);
  }
  const double us = (NowUs() - t0) / kIters;
  cudaFree(a);
  cudaFree(b);
  cudaStreamDestroy(s);
  return us;
}

// Rank body: times every size; rank 0's means go to `latency_us`.
void Rank(int port, int rank, int world, std::vector<double>* latency_us, std::string* error) {
  TcpKvStoreClient store("127.0.0.1", port);
  NcclOptions opts;
  opts.device = rank;
  opts.prefix = "bench/nccl";
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      CreateNcclCommunicator(store, rank, world, opts);
  if (!comm.ok()) {
    *error = comm.status().ToString();
    return;
  }
  cudaSetDevice(rank);
  cudaStream_t s;
  cudaStreamCreate(&s);
  void* buf = nullptr;
  cudaMalloc(&buf, kSizes[std::size(kSizes) - 1]);
  cudaMemset(buf, 0, kSizes[std::size(kSizes) - 1]);
  for (size_t i = 0; i < std::size(kSizes); ++i) {
    const size_t count = kSizes[i] / sizeof(float);
    absl::Status st;
    for (int w = 0; w < 5 && st.ok(); ++w) {
      st = (*comm)->AllReduceSum(buf, count, CommDType::kF32, {.stream = s});
      if (st.ok()) st = (*comm)->Synchronize(s);
    }
    if (st.ok()) st = (*comm)->Barrier();
    const double t0 = NowUs();
    for (int it = 0; it < kIters && st.ok(); ++it) {
      st = (*comm)->AllReduceSum(buf, count, CommDType::kF32, {.stream = s});
      if (st.ok()) st = (*comm)->Synchronize(s);
    }
    if (!st.ok()) {
      *error = st.ToString();
      break;
    }
    if (rank == 0) (*latency_us)[i] = (NowUs() - t0) / kIters;
  }
  cudaFree(buf);
  cudaStreamDestroy(s);
}

int Main() {
  const int devices = kernels::cuda::DeviceCount();
  if (devices == 0) {
    std::printf("| bench: nccl all-reduce | skipped: no CUDA device | | | n/a |\n");
    return 0;
  }
  const int world = std::min(devices, 8);
  TcpKvStoreServer server;
  if (!server.Start("127.0.0.1", 0).ok()) {
    std::printf("| bench: nccl all-reduce | FAILED: kv store | | | n/a |\n");
    return 1;
  }
  std::vector<double> latency(std::size(kSizes), -1.0);
  std::vector<std::string> errors(world);
  std::vector<std::thread> ranks;
  for (int r = 0; r < world; ++r)
    ranks.emplace_back(Rank, server.port(), r, world, &latency, &errors[r]);
  for (std::thread& t : ranks) t.join();
  int rc = 0;
  for (size_t i = 0; i < std::size(kSizes); ++i) {
    const std::string what = Fmt("nccl all-reduce f32 %zu KiB, %d rank(s)", kSizes[i] >> 10, world);
    if (latency[i] < 0) {
      PrintRow(what, "FAILED: " + errors[0] + errors[world - 1], "-", "-", -1.0);
      rc = 1;
      continue;
    }
    const double copy = CopyLatencyUs(kSizes[i]);
    PrintRow(what + " (latency, lower is better)", "ok", Fmt("%.1f us", latency[i]),
             Fmt("D2D copy %.1f us", copy), latency[i] / copy);
  }
  return rc;
}

}  // namespace
}  // namespace tpserve

int main() { return tpserve::Main(); }
