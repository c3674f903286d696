// Parity of cuda::Sample with the CPU sampler (worker/engine/sampler.cc) on
// random logits rows and random sampling parameters: greedy, temperature,
// top-k, top-p, min-p and the three penalties, vocabularies from 7 to 49152.
//
// Tolerance: the same token id for every row. The GPU sums probabilities in a
// different order than the CPU (both in double), so a draw could only differ
// if u fell within ~1e-15 of a cumulative boundary; no such row occurs in
// these seeds.
#include <algorithm>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/sampling.h"
#include "kernels/cuda/test_support.h"
#include "worker/engine/sampler.h"

namespace tpserve::kernels::cuda {
namespace {

using cpu::Rng;

// Token ids cuda::Sample picks for (rows, vocab) `logits` with one SampleRow
// per row; empty vectors on a launch error (reported as a test failure).
std::vector<int32_t> SampleOnDevice(const std::vector<float>& logits,
                                    const std::vector<SampleRow>& row_params,
                                    const std::vector<int32_t>& hist_tokens,
                                    const std::vector<int32_t>& hist_counts, int vocab) {
  const int rows = static_cast<int>(row_params.size());
  DeviceBuffer<float> dl = ToDevice(logits);
  DeviceBuffer<SampleRow> drows = ToDevice(row_params);
  DeviceBuffer<int32_t> dtok = ToDevice(hist_tokens), dcnt = ToDevice(hist_counts);
  DeviceBuffer<double> ws = DeviceZeros<double>(static_cast<size_t>(rows) * vocab);
  DeviceBuffer<int32_t> ids = DeviceZeros<int32_t>(rows);
  const absl::Status st = Sample({.logits = dl.data(),
                                  .row_params = drows.data(),
                                  .history_tokens = dtok.data(),
                                  .history_output_counts = dcnt.data(),
                                  .workspace = ws.data(),
                                  .ids = ids.data(),
                                  .rows = rows,
                                  .vocab = vocab},
                                 Stream{});
  EXPECT_TRUE(st.ok()) << st;
  return st.ok() ? ToHostVector(ids) : std::vector<int32_t>{};
}

TEST(CudaSampleParity, MatchesCpuSampler) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(77);
  for (int vocab : {7, 1000, 49152}) {
    const int rows = 48;
    std::vector<float> logits = rng.Floats(static_cast<size_t>(rows) * vocab, -8.0f, 8.0f);
    std::vector<SampleRow> row_params(rows);
    std::vector<int32_t> hist_tokens, hist_counts;
    std::vector<int32_t> want(rows);
    for (int r = 0; r < rows; ++r) {
      SamplingParams sp;
      sp.temperature = r % 4 == 0 ? 0.0f : rng.Uniform(0.2f, 1.5f);
      sp.top_k = r % 3 == 0 ? rng.Int(1, 60) : 0;
      sp.top_p = r % 5 < 2 ? rng.Uniform(0.05f, 0.99f) : 1.0f;
      sp.min_p = r % 7 == 1 ? rng.Uniform(0.0f, 0.3f) : 0.0f;
      sp.repetition_penalty = r % 2 == 0 ? rng.Uniform(0.8f, 1.5f) : 1.0f;
      sp.presence_penalty = r % 3 == 1 ? rng.Uniform(-1.0f, 1.0f) : 0.0f;
      sp.frequency_penalty = r % 3 == 2 ? rng.Uniform(-1.0f, 1.0f) : 0.0f;
      sp.seed = static_cast<uint64_t>(rng.Int(0, 1 << 30));
      // Ties in the logits: equal values must resolve to the lowest id on both sides.
      float* row = logits.data() + static_cast<size_t>(r) * vocab;
      if (r % 6 == 0 && vocab > 3) row[vocab - 1] = row[1] = row[2] = 9.0f;
      TokenHistory h;
      for (int i = rng.Int(0, 12); i > 0; --i) h.prompt.push_back(rng.Int(0, vocab - 1));
      for (int i = rng.Int(0, 12); i > 0; --i) h.output.push_back(rng.Int(0, vocab - 1));
      const int64_t position = static_cast<int64_t>(h.prompt.size() + h.output.size());
      std::vector<float> cpu_row(row, row + vocab);
      absl::StatusOr<SampledToken> t = SampleToken(cpu_row, sp, h, position);
      ASSERT_TRUE(t.ok()) << t.status();
      want[r] = t->token;

      SampleRow& p = row_params[r];
      p.params = sp;
      p.history_begin = static_cast<int32_t>(hist_tokens.size());
      AppendDistinctHistory(h, &hist_tokens, &hist_counts);
      p.history_end = static_cast<int32_t>(hist_tokens.size());
      p.uniform = SampleUniform(sp.seed, position);
    }
    hist_tokens.push_back(0);  // keep the buffers non-empty
    hist_counts.push_back(0);
    EXPECT_EQ(SampleOnDevice(logits, row_params, hist_tokens, hist_counts, vocab), want)
        << "vocab=" << vocab;
  }
}

// Greedy rows (temperature 0) take the first maximum: the lowest index wins
// a tie, as std::max_element and the CPU sampler do.
TEST(CudaSampleParity, GreedyLowestIndexWinsTies) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(6);
  const int rows = 5, vocab = 49157;
  std::vector<float> logits = rng.Floats(static_cast<size_t>(rows) * vocab);
  logits[1 * vocab + 100] = 5.0f;  // tie in row 1: index 100 must win
  logits[1 * vocab + 40000] = 5.0f;
  logits[3 * vocab + vocab - 1] = 9.0f;  // the last element
  std::vector<int32_t> want(rows);
  for (int r = 0; r < rows; ++r) {
    const float* row = logits.data() + static_cast<size_t>(r) * vocab;
    want[r] = static_cast<int32_t>(std::max_element(row, row + vocab) - row);  // first maximum
  }
  const std::vector<SampleRow> greedy(rows);
  EXPECT_EQ(SampleOnDevice(logits, greedy, {0}, {0}, vocab), want);
}

}  // namespace
}  // namespace tpserve::kernels::cuda
