// CPU kernel benchmarks. GEMV on SmolLM2-135M's shapes reports weight bytes
// per second (GB/s) and its ratio to this machine's copy bandwidth (x_copy),
// measured at the start of the same run with the same thread count; GEMM
// reports GFLOP/s. Each figure is the best of 9 windows of 25 ms (GB/s_med:
// the median), because the development machine is shared.
//
//   bazel run //kernels/cpu:kernels_bench -- --benchmark_min_time=0.3
//
// Weights rotate through enough copies (>= 96 MiB) that every call streams
// from DRAM, as a decode step over the whole model does (~96 MB per token).
#include <algorithm>
#include <cstdlib>
#include <string>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cpu/thread_pool.h"

namespace tpserve::kernels::cpu {
namespace {

constexpr int64_t kWorkingSet = int64_t{96} << 20;

// Copy bandwidth (bytes copied per second; each byte is read once and written
// once) with `threads` threads, best of 9 passes over 64 MiB.
double CopyBandwidth(int threads) {
  const size_t bytes = size_t{64} << 20;
  std::vector<uint8_t> src(bytes, 1), dst(bytes, 0);
  ThreadPool pool(threads);
  double best = 0.0;
  for (int rep = 0; rep < 9; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.ParallelFor(threads, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const size_t lo = bytes * t / threads, hi = bytes * (t + 1) / threads;
        std::memcpy(dst.data() + lo, src.data() + lo, hi - lo);
      }
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, bytes / s);
  }
  benchmark::DoNotOptimize(dst.data());
  return best;
}

double g_copy_bw[3] = {0.0, 0.0, 0.0};  // by thread count

void BM_Copy(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  for (auto _ : state) {
    state.counters["GB/s"] = CopyBandwidth(threads) / 1e9;
  }
}

// state: n, k, dtype, threads, m
void BM_Gemm(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const int k = static_cast<int>(state.range(1));
  const DType dtype = static_cast<DType>(state.range(2));
  const int threads = static_cast<int>(state.range(3));
  const int m = static_cast<int>(state.range(4));
  const int64_t matrix_bytes = int64_t{n} * RowBytes(dtype, k);
  const int copies = static_cast<int>(std::max<int64_t>(1, kWorkingSet / matrix_bytes));
  Rng rng(1);
  const std::vector<uint8_t> one = RandomRows(rng, dtype, n, k);
  std::vector<uint8_t> weights(static_cast<size_t>(matrix_bytes) * copies);
  for (int c = 0; c < copies; ++c) std::memcpy(weights.data() + c * matrix_bytes, one.data(), matrix_bytes);
  std::vector<float> x = rng.Floats(static_cast<size_t>(m) * k);
  std::vector<float> y(static_cast<size_t>(m) * n);
  ThreadPool pool(threads);
  GemmParams p{.x = x.data(), .w = nullptr, .w_dtype = dtype, .y = y.data(), .m = m, .n = n, .k = k};
  int c = 0;
  auto run_once = [&] {
    p.w = weights.data() + c * matrix_bytes;
    c = (c + 1) % copies;
    if (!Gemm(p, Stream{.pool = &pool}).ok()) state.SkipWithError("Gemm failed");
  };
  // The development machine is shared: time kWindows windows of ~25 ms and
  // report the best (what the kernel can do) and the median.
  constexpr int kWindows = 9;
  std::vector<double> per_call;  // seconds
  for (auto _ : state) {
    run_once();  // warm-up
    for (int w = 0; w < kWindows; ++w) {
      int calls = 0;
      const auto t0 = std::chrono::steady_clock::now();
      double elapsed = 0.0;
      do {
        run_once();
        ++calls;
        elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      } while (elapsed < 0.025);
      per_call.push_back(elapsed / calls);
    }
  }
  std::sort(per_call.begin(), per_call.end());
  const double best = per_call.front(), median = per_call[per_call.size() / 2];
  state.counters["us/call"] = best * 1e6;
  state.counters["GB/s"] = matrix_bytes / best / 1e9;
  state.counters["GB/s_med"] = matrix_bytes / median / 1e9;
  state.counters["GFLOP/s"] = 2.0 * m * n * k / best / 1e9;
  if (threads >= 1 && threads <= 2 && g_copy_bw[threads] > 0) {
    state.counters["x_copy"] = matrix_bytes / best / g_copy_bw[threads];
  }
  state.SetLabel(std::string(DTypeName(dtype)) + " " + IsaName(ActiveIsa()));
}

void GemvArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"n", "k", "dtype", "threads", "m"});
  const int q41 = static_cast<int>(DType::kQ4_1), q80 = static_cast<int>(DType::kQ8_0);
  for (int threads : {1, 2}) {
    for (int dt : {q41, q80}) {
      b->Args({576, 576, dt, threads, 1});
      b->Args({1536, 576, dt, threads, 1});
      b->Args({576, 1536, dt, threads, 1});
    }
    b->Args({49152, 576, q80, threads, 1});
  }
}

void GemmArgsList(benchmark::internal::Benchmark* b) {
  b->ArgNames({"n", "k", "dtype", "threads", "m"});
  const int q41 = static_cast<int>(DType::kQ4_1);
  for (int threads : {1, 2}) {
    b->Args({1536, 576, q41, threads, 16});
    b->Args({1536, 576, q41, threads, 512});
  }
}

BENCHMARK(BM_Copy)->Arg(1)->Arg(2)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Gemm)->Apply(GemvArgs)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Gemm)->Apply(GemmArgsList)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tpserve::kernels::cpu

int main(int argc, char** argv) {
  using tpserve::kernels::cpu::g_copy_bw;
  benchmark::Initialize(&argc, argv);
  g_copy_bw[1] = tpserve::kernels::cpu::CopyBandwidth(1);
  g_copy_bw[2] = tpserve::kernels::cpu::CopyBandwidth(2);
  std::printf("copy bandwidth: 1 thread %.2f GB/s, 2 threads %.2f GB/s; isa %s\n",
              g_copy_bw[1] / 1e9, g_copy_bw[2] / 1e9,
              tpserve::kernels::cpu::IsaName(tpserve::kernels::cpu::ActiveIsa()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
