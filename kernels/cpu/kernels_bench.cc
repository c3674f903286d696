// CPU kernel benchmarks. GEMV on SmolLM2-135M's shapes reports weight bytes
// read per second (GB/s) and its ratio (x_copy) to this machine's copy
// bandwidth in STREAM's convention (read + write bytes of a 64 MiB memcpy),
// measured at the start of the same run with the same thread count; GEMM
// reports GFLOP/s. Each figure is the best of 9 windows of 25 ms (GB/s_med:
// the median), because the development machine is shared; for one thread the
// *_cpu figures divide by the thread's CPU time instead, which excludes
// preemption by other processes.
//
//   bazel run //kernels/cpu:kernels_bench -- --benchmark_min_time=0.3
//
// Weights rotate through enough copies (>= 96 MiB) that every call streams
// from DRAM, as a decode step over the whole model does (~96 MB per token).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "benchmark/benchmark.h"
#include "common/status.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cpu/thread_pool.h"

namespace tpserve::kernels::cpu {
namespace {

constexpr int64_t kWorkingSet = int64_t{96} << 20;

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Copy bandwidth in STREAM's convention: bytes read + bytes written per
// second (2x the bytes memcpy moves).
struct CopyRate {
  double wall = 0.0;  // per wall second, best pass
  double cpu = 0.0;   // per CPU second of the calling thread (1 thread only)
};

// Copy bandwidth with `threads` threads, best of 25 passes of a 64 MiB memcpy.
CopyRate CopyBandwidth(int threads) {
  const size_t bytes = size_t{64} << 20;
  std::vector<uint8_t> src(bytes, 1), dst(bytes, 0);
  ThreadPool pool(threads);
  CopyRate best;
  for (int rep = 0; rep < 25; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = ThreadCpuSeconds();
    pool.ParallelFor(threads, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const size_t lo = bytes * t / threads, hi = bytes * (t + 1) / threads;
        std::memcpy(dst.data() + lo, src.data() + lo, hi - lo);
      }
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best.wall = std::max(best.wall, 2.0 * bytes / s);
    if (threads == 1) best.cpu = std::max(best.cpu, 2.0 * bytes / (ThreadCpuSeconds() - c0));
  }
  benchmark::DoNotOptimize(dst.data());
  return best;
}

CopyRate g_copy[3];  // by thread count

void BM_Copy(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  for (auto _ : state) {
    const CopyRate r = CopyBandwidth(threads);
    state.counters["GB/s"] = r.wall / 1e9;
    if (threads == 1) state.counters["GB/s_cpu"] = r.cpu / 1e9;
  }
}

// state: n, k, dtype, threads, m[, cached]. cached = 1 reuses one matrix
// (L2-resident: the kernel's compute rate rather than DRAM's). `fixed`: the
// partition-invariant output (GemmParams::y_fixed) instead of y.
void GemmBody(benchmark::State& state, bool fixed) {
  const int n = static_cast<int>(state.range(0));
  const int k = static_cast<int>(state.range(1));
  const DType dtype = static_cast<DType>(state.range(2));
  const int threads = static_cast<int>(state.range(3));
  const int m = static_cast<int>(state.range(4));
  const int64_t matrix_bytes = int64_t{n} * RowBytes(dtype, k);
  const bool cached = state.range(5) != 0;
  const int copies =
      cached ? 1 : static_cast<int>(std::max<int64_t>(1, kWorkingSet / matrix_bytes));
  Rng rng(1);
  const std::vector<uint8_t> one = RandomRows(rng, dtype, n, k);
  std::vector<uint8_t> weights(static_cast<size_t>(matrix_bytes) * copies);
  for (int c = 0; c < copies; ++c)
    std::memcpy(weights.data() + c * matrix_bytes, one.data(), matrix_bytes);
  std::vector<float> x = rng.Floats(static_cast<size_t>(m) * k);
  std::vector<float> y(static_cast<size_t>(m) * n);
  std::vector<int64_t> y_fixed(static_cast<size_t>(m) * n);
  ThreadPool pool(threads);
  GemmParams p{
      .x = x.data(), .w = nullptr, .w_dtype = dtype, .y = y.data(), .m = m, .n = n, .k = k};
  if (fixed) {
    p.y = nullptr;
    p.y_fixed = y_fixed.data();
  }
  int c = 0;
  auto run_once = [&] {
    p.w = weights.data() + c * matrix_bytes;
    c = (c + 1) % copies;
    if (!Gemm(p, Stream{.pool = &pool}).ok()) state.SkipWithError("Gemm failed");
  };
  // The development machine is shared: time kWindows windows of ~25 ms and
  // report the best (what the kernel can do) and the median.
  constexpr int kWindows = 9;
  std::vector<double> per_call;      // wall seconds
  std::vector<double> per_call_cpu;  // calling thread's CPU seconds
  for (auto _ : state) {
    run_once();  // warm-up
    for (int w = 0; w < kWindows; ++w) {
      int calls = 0;
      const auto t0 = std::chrono::steady_clock::now();
      const double c0 = ThreadCpuSeconds();
      double elapsed = 0.0;
      do {
        run_once();
        ++calls;
        elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      } while (elapsed < 0.025);
      per_call.push_back(elapsed / calls);
      per_call_cpu.push_back((ThreadCpuSeconds() - c0) / calls);
    }
  }
  std::sort(per_call_cpu.begin(), per_call_cpu.end());
  // With one thread, CPU time excludes preemption by other processes: the
  // kernel's own rate on this core (caches are still shared).
  if (threads == 1) {
    state.counters["GB/s_cpu"] = matrix_bytes / per_call_cpu.front() / 1e9;
    state.counters["GFLOP/s_cpu"] = 2.0 * m * n * k / per_call_cpu.front() / 1e9;
  }
  std::sort(per_call.begin(), per_call.end());
  const double best = per_call.front(), median = per_call[per_call.size() / 2];
  state.counters["us/call"] = best * 1e6;
  state.counters["GB/s"] = matrix_bytes / best / 1e9;
  state.counters["GB/s_med"] = matrix_bytes / median / 1e9;
  state.counters["GFLOP/s"] = 2.0 * m * n * k / best / 1e9;
  // Ratio to copy bandwidth: CPU-time rates for 1 thread (robust to other
  // processes on the machine), best wall-clock rates for 2.
  if (threads == 1 && g_copy[1].cpu > 0) {
    state.counters["x_copy"] = matrix_bytes / per_call_cpu.front() / g_copy[1].cpu;
  } else if (threads == 2 && g_copy[2].wall > 0) {
    state.counters["x_copy"] = matrix_bytes / best / g_copy[2].wall;
  }
  state.SetLabel(std::string(DTypeName(dtype)) + " " + IsaName(ActiveIsa()));
}

void BM_Gemm(benchmark::State& state) { GemmBody(state, false); }
void BM_GemmFixed(benchmark::State& state) { GemmBody(state, true); }

// One decode token through SmolLM2-135M's op sequence with random weights
// (30 layers of Q4_1 matrices, Q8_0 tied LM head, f32 paged KV cache at
// context `ctx`): kernel time only, no sampling. An upper bound for the
// engine's batch-1 decode rate.
void BM_DecodeToken(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int ctx = static_cast<int>(state.range(1));
  const bool fused = state.range(2) != 0;  // QKV and gate/up through GemmMulti
  constexpr int kLayers = 30, kHidden = 576, kHeads = 9, kKvHeads = 3, kHeadDim = 64;
  constexpr int kFfn = 1536, kVocab = 49152, kBlock = 16;
  constexpr int kKvDim = kKvHeads * kHeadDim;
  Rng rng(3);
  struct Layer {
    std::vector<uint8_t> q, k, v, o, gate, up, down;
    std::vector<float> k_cache, v_cache;
  };
  const int num_blocks = (ctx + 1 + kBlock - 1) / kBlock;
  std::vector<Layer> layers(kLayers);
  for (Layer& l : layers) {
    l.q = RandomRows(rng, DType::kQ4_1, kHidden, kHidden);
    l.k = RandomRows(rng, DType::kQ4_1, kKvDim, kHidden);
    l.v = RandomRows(rng, DType::kQ4_1, kKvDim, kHidden);
    l.o = RandomRows(rng, DType::kQ4_1, kHidden, kHidden);
    l.gate = RandomRows(rng, DType::kQ4_1, kFfn, kHidden);
    l.up = RandomRows(rng, DType::kQ4_1, kFfn, kHidden);
    l.down = RandomRows(rng, DType::kQ4_1, kHidden, kFfn);
    l.k_cache = rng.Floats(static_cast<size_t>(num_blocks) * kBlock * kKvDim);
    l.v_cache = rng.Floats(static_cast<size_t>(num_blocks) * kBlock * kKvDim);
  }
  const std::vector<uint8_t> lm_head = RandomRows(rng, DType::kQ8_0, kVocab, kHidden);
  const std::vector<float> norm_w = rng.Floats(kHidden, 0.5f, 1.5f);
  std::vector<float> x(kHidden), h(kHidden), q(kHidden), k(kKvDim), v(kKvDim), att(kHidden),
      proj(kHidden), gate(kFfn), up(kFfn), act(kFfn), logits(kVocab);
  std::vector<int32_t> table(num_blocks);
  for (int b = 0; b < num_blocks; ++b) table[b] = b;
  const int32_t pos = ctx;
  const int32_t cu[2] = {0, 1};
  const int64_t slot = ctx;
  ThreadPool pool(threads);
  const Stream st{.pool = &pool};
  auto gemv = [&](const std::vector<uint8_t>& w, DType t, const float* in, float* out, int n,
                  int kk) {
    GemmParams g{.x = in, .w = w.data(), .w_dtype = t, .y = out, .m = 1, .n = n, .k = kk};
    return Gemm(g, st);
  };
  auto gemv_params = [](const std::vector<uint8_t>& w, const float* in, float* out, int n, int kk) {
    return GemmParams{
        .x = in, .w = w.data(), .w_dtype = DType::kQ4_1, .y = out, .m = 1, .n = n, .k = kk};
  };
  // Linear layers over one input: one GemmMulti launch (fused) or one Gemm each.
  auto linear = [&](std::initializer_list<GemmParams> ps) -> absl::Status {
    if (fused) return GemmMulti(absl::MakeConstSpan(ps.begin(), ps.size()), st);
    absl::Status s;
    for (const GemmParams& p : ps) s.Update(Gemm(p, st));
    return s;
  };
  auto token = [&]() -> absl::Status {
    for (Layer& l : layers) {
      absl::Status s = RmsNorm(
          {.x = x.data(), .weight = norm_w.data(), .y = h.data(), .rows = 1, .dim = kHidden}, st);
      s.Update(linear({gemv_params(l.q, h.data(), q.data(), kHidden, kHidden),
                       gemv_params(l.k, h.data(), k.data(), kKvDim, kHidden),
                       gemv_params(l.v, h.data(), v.data(), kKvDim, kHidden)}));
      RopeParams rp{.q = q.data(),
                    .k = k.data(),
                    .positions = &pos,
                    .tokens = 1,
                    .n_heads = kHeads,
                    .n_kv_heads = kKvHeads,
                    .head_dim = kHeadDim};
      s.Update(Rope(rp, st));
      s.Update(KvCacheWrite({.k = k.data(),
                             .v = v.data(),
                             .k_cache = l.k_cache.data(),
                             .v_cache = l.v_cache.data(),
                             .slot_mapping = &slot,
                             .tokens = 1,
                             .n_kv_heads = kKvHeads,
                             .head_dim = kHeadDim,
                             .block_size = kBlock,
                             .num_blocks = num_blocks},
                            st));
      s.Update(PagedAttention({.q = q.data(),
                               .k_cache = l.k_cache.data(),
                               .v_cache = l.v_cache.data(),
                               .out = att.data(),
                               .block_tables = table.data(),
                               .cu_q_lens = cu,
                               .start_pos = &pos,
                               .num_seqs = 1,
                               .max_blocks_per_seq = num_blocks,
                               .n_heads = kHeads,
                               .n_kv_heads = kKvHeads,
                               .head_dim = kHeadDim,
                               .block_size = kBlock,
                               .num_blocks = num_blocks,
                               .scale = 0.125f},
                              st));
      s.Update(gemv(l.o, DType::kQ4_1, att.data(), proj.data(), kHidden, kHidden));
      s.Update(Add({.a = x.data(), .b = proj.data(), .y = x.data(), .n = kHidden}, st));
      s.Update(RmsNorm(
          {.x = x.data(), .weight = norm_w.data(), .y = h.data(), .rows = 1, .dim = kHidden}, st));
      s.Update(linear({gemv_params(l.gate, h.data(), gate.data(), kFfn, kHidden),
                       gemv_params(l.up, h.data(), up.data(), kFfn, kHidden)}));
      s.Update(Swiglu(
          {.gate = gate.data(), .up = up.data(), .out = act.data(), .rows = 1, .dim = kFfn}, st));
      s.Update(gemv(l.down, DType::kQ4_1, act.data(), proj.data(), kHidden, kFfn));
      s.Update(Add({.a = x.data(), .b = proj.data(), .y = x.data(), .n = kHidden}, st));
      if (!s.ok()) return s;
    }
    TPS_RETURN_IF_ERROR(RmsNorm(
        {.x = x.data(), .weight = norm_w.data(), .y = h.data(), .rows = 1, .dim = kHidden}, st));
    return gemv(lm_head, DType::kQ8_0, h.data(), logits.data(), kVocab, kHidden);
  };
  std::vector<double> per_token, per_token_cpu;
  for (auto _ : state) {
    for (int rep = 0; rep < 40; ++rep) {
      x = rng.Floats(kHidden);  // keep activations bounded across tokens
      const auto t0 = std::chrono::steady_clock::now();
      const double c0 = ThreadCpuSeconds();
      if (!token().ok()) state.SkipWithError("op failed");
      per_token.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      per_token_cpu.push_back(ThreadCpuSeconds() - c0);
    }
  }
  std::sort(per_token.begin(), per_token.end());
  std::sort(per_token_cpu.begin(), per_token_cpu.end());
  // One thread: CPU time excludes preemption by other processes.
  if (threads == 1) state.counters["ms/token_cpu"] = per_token_cpu.front() * 1e3;
  state.counters["ms/token"] = per_token.front() * 1e3;
  state.counters["tok/s"] = 1.0 / per_token.front();
  state.counters["tok/s_med"] = 1.0 / per_token[per_token.size() / 2];
  state.SetLabel(IsaName(ActiveIsa()));
}

// Cost of one ParallelFor with trivial chunks: the synchronisation every
// multi-threaded kernel launch pays (~250 per decode token for SmolLM2).
void BM_ParallelForOverhead(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  std::atomic<int64_t> sink{0};
  for (auto _ : state) {
    pool.ParallelFor(
        8, 1, [&](int64_t b, int64_t e) { sink.fetch_add(e - b, std::memory_order_relaxed); });
  }
  benchmark::DoNotOptimize(sink.load());
}

// PagedAttention for one sequence of SmolLM2's shape (9 query heads, 3 KV
// heads, head_dim 64, block 16): q_len = 1 is decode at context ctx, larger
// q_len a prefill chunk ending at ctx; bf16 = 1 reads a bf16 KV cache.
// Reports us per call (one layer).
void BM_PagedAttention(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int ctx = static_cast<int>(state.range(1));
  const int q_len = static_cast<int>(state.range(2));
  const DType kv = state.range(3) != 0 ? DType::kBF16 : DType::kF32;
  constexpr int kHeads = 9, kKvHeads = 3, kHeadDim = 64, kBlock = 16;
  const int num_blocks = (ctx + kBlock - 1) / kBlock;
  Rng rng(5);
  // Random K/V as the cache holds them (f32, or bf16 bit patterns).
  auto cache = [&] {
    return KvCacheBytes(rng.Floats(static_cast<size_t>(num_blocks) * kBlock * kKvHeads * kHeadDim),
                        kv);
  };
  // On 64-byte lines, as the engine's pool (kv_cache_pool.cc) allocates them.
  struct alignas(64) Line {
    uint8_t b[64];
  };
  auto aligned = [](const std::vector<uint8_t>& bytes) {
    std::vector<Line> lines((bytes.size() + 63) / 64);
    std::memcpy(lines.data(), bytes.data(), bytes.size());
    return lines;
  };
  const std::vector<Line> k_cache = aligned(cache()), v_cache = aligned(cache());
  std::vector<float> q = rng.Floats(static_cast<size_t>(q_len) * kHeads * kHeadDim);
  std::vector<float> out(q.size());
  std::vector<int32_t> table(num_blocks);
  for (int b = 0; b < num_blocks; ++b) table[b] = b;
  const int32_t cu[2] = {0, q_len};
  const int32_t start = ctx - q_len;
  ThreadPool pool(threads);
  PagedAttentionParams p{.q = q.data(),
                         .k_cache = k_cache.data(),
                         .v_cache = v_cache.data(),
                         .kv_dtype = kv,
                         .out = out.data(),
                         .block_tables = table.data(),
                         .cu_q_lens = cu,
                         .start_pos = &start,
                         .num_seqs = 1,
                         .max_blocks_per_seq = num_blocks,
                         .n_heads = kHeads,
                         .n_kv_heads = kKvHeads,
                         .head_dim = kHeadDim,
                         .block_size = kBlock,
                         .num_blocks = num_blocks,
                         .scale = 0.125f};
  for (auto _ : state) {
    if (!PagedAttention(p, Stream{.pool = &pool}).ok()) state.SkipWithError("failed");
  }
  state.SetLabel(IsaName(ActiveIsa()));
}

void GemvArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"n", "k", "dtype", "threads", "m", "cached"});
  const int q41 = static_cast<int>(DType::kQ4_1), q80 = static_cast<int>(DType::kQ8_0);
  for (int threads : {1, 2}) {
    for (int dt : {q41, q80}) {
      b->Args({576, 576, dt, threads, 1, 0});
      b->Args({1536, 576, dt, threads, 1, 0});
      b->Args({576, 1536, dt, threads, 1, 0});
    }
    b->Args({49152, 576, q80, threads, 1, 0});
  }
  b->Args({1536, 576, q41, 1, 1, 1});
  b->Args({1536, 576, q80, 1, 1, 1});
  b->Args({1536, 576, static_cast<int>(DType::kBF16), 1, 1, 0});
}

void GemmArgsList(benchmark::internal::Benchmark* b) {
  b->ArgNames({"n", "k", "dtype", "threads", "m", "cached"});
  const int q41 = static_cast<int>(DType::kQ4_1);
  const int q80 = static_cast<int>(DType::kQ8_0);
  for (int threads : {1, 2}) {
    b->Args({1536, 576, q41, threads, 16, 0});
    b->Args({1536, 576, q41, threads, 512, 0});
  }
  b->Args({1536, 576, q80, 1, 512, 0});
  b->Args({576, 1536, q41, 1, 512, 0});
  const int bf16 = static_cast<int>(DType::kBF16);
  b->Args({1536, 576, bf16, 1, 16, 0});
  b->Args({1536, 576, bf16, 1, 512, 0});
  b->Args({576, 1536, bf16, 1, 16, 0});
  b->Args({576, 1536, bf16, 1, 512, 0});
  b->Args({1536, 576, bf16, 2, 512, 0});
  b->Args({1536, 576, bf16, 1, 32, 0});
  b->Args({1536, 576, bf16, 1, 64, 0});
}

// The row-parallel shapes (O: 576 x 576, down: 576 x 1536) both ways.
void RowParallelArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"n", "k", "dtype", "threads", "m", "cached"});
  const int q41 = static_cast<int>(DType::kQ4_1);
  for (int k : {576, 1536}) {
    b->Args({576, k, q41, 1, 1, 0});
    b->Args({576, k, q41, 1, 1, 1});
    b->Args({576, k, q41, 1, 16, 0});
    b->Args({576, k, q41, 1, 512, 0});
  }
}

BENCHMARK(BM_Copy)->Arg(1)->Arg(2)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Gemm)->Apply(RowParallelArgs)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GemmFixed)->Apply(RowParallelArgs)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Gemm)->Apply(GemvArgs)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Gemm)->Apply(GemmArgsList)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PagedAttention)
    ->ArgNames({"threads", "ctx", "q_len", "bf16"})
    ->Args({1, 128, 1, 0})
    ->Args({1, 128, 1, 1})
    ->Args({2, 128, 1, 1})
    ->Args({1, 1024, 1, 0})
    ->Args({1, 1024, 1, 1})
    ->Args({2, 1024, 1, 0})
    ->Args({2, 1024, 1, 1})
    ->Args({1, 4096, 1, 0})
    ->Args({1, 4096, 1, 1})
    ->Args({2, 512, 512, 0})
    ->Args({2, 512, 512, 1})
    ->Args({1, 1024, 1024, 1})
    ->Args({2, 1024, 1024, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ParallelForOverhead)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeToken)
    ->ArgNames({"threads", "ctx", "fused"})
    ->Args({1, 128, 0})
    ->Args({2, 128, 0})
    ->Args({2, 128, 1})
    ->Args({2, 1024, 1})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tpserve::kernels::cpu

int main(int argc, char** argv) {
  using tpserve::kernels::cpu::g_copy;
  benchmark::Initialize(&argc, argv);
  g_copy[1] = tpserve::kernels::cpu::CopyBandwidth(1);
  g_copy[2] = tpserve::kernels::cpu::CopyBandwidth(2);
  std::printf(
      "copy bandwidth (read + write): 1 thread %.2f GB/s (%.2f GB/s per CPU second), "
      "2 threads %.2f GB/s; "
      "isa %s\n",
      g_copy[1].wall / 1e9, g_copy[1].cpu / 1e9, g_copy[2].wall / 1e9,
      tpserve::kernels::cpu::IsaName(tpserve::kernels::cpu::ActiveIsa()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
