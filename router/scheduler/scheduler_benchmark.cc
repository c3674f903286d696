// Router-side cost of one step: Schedule() + FinalizeStep() + OnStepResult().
// It has to stay far below a forward step (tens of ms on CPU, a few ms on GPU).
//
//   bazel run //router/scheduler:scheduler_benchmark
//
// BM_DecodeStep/N: N running sequences, each decoding one token per step
// (block tables of ~130-260 blocks are copied into every step).
// BM_MixedStep/N: N sequences with a 2048-token budget; each finishes after
// 32 tokens and is replaced by a new 512-token prompt sharing a 256-token
// system prefix, so steps mix decodes, chunked prefills and prefix hits.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "router/scheduler/scheduler.h"

namespace tpserve {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1000);

std::vector<SampledTokenId> FakeSample(const ScheduledStep& step) {
  std::vector<SampledTokenId> out;
  out.reserve(step.seqs.size());
  for (const ScheduledSequence& s : step.seqs) {
    if (s.sample) out.push_back({s.seq_id, static_cast<int32_t>(s.seq_id % 1000)});
  }
  return out;
}

void BM_DecodeStep(benchmark::State& state) {
  const int32_t n = static_cast<int32_t>(state.range(0));
  Scheduler sched({.max_num_batched_tokens = 1 << 20, .max_num_seqs = n}, 200000, 16);
  for (int32_t id = 0; id < n; ++id) {
    SchedulerRequest r;
    r.seq_id = id;
    r.prompt.resize(2048);
    std::iota(r.prompt.begin(), r.prompt.end(), id * 7);
    if (!sched.Add(r).ok()) state.SkipWithError("Add failed");
  }
  ScheduledStep prefill = sched.Schedule(kNow);  // all prompts in one step
  if (!sched.FinalizeStep(&prefill).ok() ||
      !sched.OnStepResult(prefill.step_id, FakeSample(prefill)).ok()) {
    state.SkipWithError("prefill failed");
  }
  for (auto _ : state) {
    ScheduledStep step = sched.Schedule(kNow);
    if (!sched.FinalizeStep(&step).ok() ||
        !sched.OnStepResult(step.step_id, FakeSample(step)).ok()) {
      state.SkipWithError("step failed");
      break;
    }
    benchmark::DoNotOptimize(step.num_tokens);
  }
  state.counters["seqs"] = n;
}
BENCHMARK(BM_DecodeStep)->Arg(16)->Arg(256)->Iterations(2000)->Unit(benchmark::kMicrosecond);

void BM_MixedStep(benchmark::State& state) {
  const int32_t n = static_cast<int32_t>(state.range(0));
  Scheduler sched({.max_num_batched_tokens = 2048, .max_num_seqs = n, .max_waiting = 4 * n}, 200000,
                  16);
  std::vector<int32_t> prompt(512);
  std::iota(prompt.begin(), prompt.end(), 0);
  uint64_t next_id = 0;
  std::vector<int32_t> generated;
  auto add = [&] {
    SchedulerRequest r;
    r.seq_id = next_id++;
    r.prompt = prompt;
    for (int k = 256; k < 512; ++k) r.prompt[k] = static_cast<int32_t>(r.seq_id * 31 + k);
    (void)sched.Add(std::move(r));
    generated.push_back(0);
  };
  for (int32_t i = 0; i < n; ++i) add();
  int64_t tokens = 0;
  for (auto _ : state) {
    ScheduledStep step = sched.Schedule(kNow);
    std::vector<SampledTokenId> out = FakeSample(step);
    if (!sched.FinalizeStep(&step).ok() || !sched.OnStepResult(step.step_id, out).ok()) {
      state.SkipWithError("step failed");
      break;
    }
    tokens += step.num_tokens;
    for (const SampledTokenId& t : out) {
      if (++generated[t.seq_id] == 32) {
        (void)sched.Finish(t.seq_id, FinishReason::kLength);
        add();
      }
    }
  }
  state.counters["tokens/step"] = static_cast<double>(tokens) / state.iterations();
  state.counters["prefix_hit_rate"] =
      static_cast<double>(sched.metrics().prefix_cache_hits_total) /
      std::max<int64_t>(1, sched.metrics().prefix_cache_queries_total);
}
BENCHMARK(BM_MixedStep)->Arg(16)->Arg(256)->Iterations(2000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tpserve

BENCHMARK_MAIN();
