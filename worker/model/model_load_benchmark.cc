// Time to open the default model until it is ready to slice: mmap, parse the
// GGUF header and metadata (49k tokens, 49k merges), map the config, validate
// every tensor's shape, then take rank 0's row slice of every tensor (2-way
// TP; zero-copy views, or Q8_0 conversions for K-quant files). Recorded in
// docs/benchmarks.md ("Model loading"). $TPSERVE_BENCH_MODEL overrides the model.
//
//   bazel run -c opt //worker/model:model_load_benchmark   (TPSERVE_ROOT set)
#include <cstdlib>
#include <string>

#include "benchmark/benchmark.h"
#include "formats/gguf_reader.h"
#include "worker/model/model_source.h"

namespace tpserve {
namespace {

std::string DefaultModel() {
  if (const char* m = std::getenv("TPSERVE_BENCH_MODEL"); m != nullptr) return m;
  const char* root = std::getenv("TPSERVE_ROOT");
  return std::string(root != nullptr ? root : ".") + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

void BM_GgufParse(benchmark::State& state) {
  const std::string path = DefaultModel();
  for (auto _ : state) {
    auto f = GgufFile::Open(path);
    if (!f.ok()) {
      state.SkipWithError(std::string(f.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(f->get());
  }
}
BENCHMARK(BM_GgufParse)->Unit(benchmark::kMillisecond);

void BM_OpenModelAndSliceRank0(benchmark::State& state) {
  const std::string path = DefaultModel();
  for (auto _ : state) {
    auto m = OpenModel(path);
    if (!m.ok()) {
      state.SkipWithError(std::string(m.status().message()).c_str());
      return;
    }
    uint64_t bytes = 0;
    for (const TensorInfo& t : (*m)->tensors()) {
      auto s = (*m)->ReadRows(t.name, 0, t.shape[0] / 2);
      if (!s.ok()) {
        state.SkipWithError(std::string(s.status().message()).c_str());
        return;
      }
      bytes += s->bytes;
    }
    benchmark::DoNotOptimize(bytes);
  }
}
BENCHMARK(BM_OpenModelAndSliceRank0)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tpserve

BENCHMARK_MAIN();
