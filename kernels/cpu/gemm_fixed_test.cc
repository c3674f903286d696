// Partition-invariant GEMM output (ops.h GemmParams::y_fixed) and
// AddFixedPoint:
// - splitting k into slices at chunk boundaries (as tensor-parallel ranks
//   hold row-parallel weights), running each slice and summing the int64
//   results gives exactly the bits of the whole-k run, for every weight type,
//   ISA, thread count and split;
// - quantized weights give the same bits on every ISA;
// - the value agrees with the float Gemm to f32 accumulation accuracy
//   (kTol below, relative to sum |x w|);
// - AddFixedPoint rounds double(a) + b * 2^-32 once.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cpu/thread_pool.h"

namespace tpserve::kernels::cpu {
namespace {

// |fixed - float Gemm| / sum_k |x_k w_k|: both are within ~sqrt(k) * 6e-8 of
// that magnitude (f32 summation), plus 2^-33 absolute from the fixed point.
constexpr double kTol = 1e-5;

struct Problem {
  int m, n, k;
  DType dtype;
  std::vector<float> x;    // (m, k)
  std::vector<uint8_t> w;  // (n, k) in dtype
};

Problem MakeProblem(Rng& rng, DType dtype, int m, int n, int k) {
  Problem p{m,
            n,
            k,
            dtype,
            rng.Floats(static_cast<size_t>(m) * k, -2.0f, 2.0f),
            RandomRows(rng, dtype, n, k)};
  return p;
}

// Columns [begin, begin + count) of every weight row (whole blocks for
// quantized types), as ShardWeights' column slices hold them.
std::vector<uint8_t> ColumnSlice(const Problem& p, int begin, int count) {
  const int64_t row_bytes = RowBytes(p.dtype, p.k);
  const int64_t off = RowBytes(p.dtype, begin), bytes = RowBytes(p.dtype, count);
  std::vector<uint8_t> out(static_cast<size_t>(p.n * bytes));
  for (int j = 0; j < p.n; ++j) {
    std::memcpy(out.data() + j * bytes, p.w.data() + j * row_bytes + off, bytes);
  }
  return out;
}

// y_fixed of columns [begin, begin + count) of the problem.
std::vector<int64_t> RunSlice(const Problem& p, int begin, int count, int chunk, ThreadPool* pool) {
  const std::vector<uint8_t> w = ColumnSlice(p, begin, count);
  std::vector<int64_t> y(static_cast<size_t>(p.m) * p.n, 0x5a5a);
  GemmParams g;
  g.x = p.x.data() + begin;
  g.x_stride = p.k;
  g.w = w.data();
  g.w_dtype = p.dtype;
  g.m = p.m;
  g.n = p.n;
  g.k = count;
  g.y_fixed = y.data();
  g.fixed_chunk = chunk;
  EXPECT_TRUE(Gemm(g, Stream{.pool = pool}).ok());
  return y;
}

// Sum over the slices of `bounds` (column offsets, first 0, last k).
std::vector<int64_t> RunSplit(const Problem& p, const std::vector<int>& bounds, int chunk,
                              ThreadPool* pool) {
  std::vector<uint64_t> sum(static_cast<size_t>(p.m) * p.n, 0);
  for (size_t s = 0; s + 1 < bounds.size(); ++s) {
    const std::vector<int64_t> part =
        RunSlice(p, bounds[s], bounds[s + 1] - bounds[s], chunk, pool);
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += static_cast<uint64_t>(part[i]);
  }
  return std::vector<int64_t>(sum.begin(), sum.end());
}

using FixedCase = std::tuple<Isa, DType>;

class GemmFixedTest : public ::testing::TestWithParam<FixedCase> {};

TEST_P(GemmFixedTest, SplitsOfKGiveTheSameBits) {
  const auto [isa, dtype] = GetParam();
  ScopedIsaForTesting force(isa);
  Rng rng(31 + static_cast<int>(dtype));
  ThreadPool pool(3);
  const int chunk = 32;
  // k = 12 chunks: splits like TP = 1, 2, 3, 4 and an uneven 5 + 1 + 6.
  const int k = 12 * chunk;
  for (int m : {1, 5, 19}) {
    for (int n : {4, 7, 33}) {
      const Problem p = MakeProblem(rng, dtype, m, n, k);
      const std::vector<int64_t> whole = RunSlice(p, 0, k, chunk, nullptr);
      for (const std::vector<int>& chunks_at : std::vector<std::vector<int>>{
               {0, 6, 12}, {0, 4, 8, 12}, {0, 3, 6, 9, 12}, {0, 5, 6, 12}}) {
        std::vector<int> bounds;
        for (int c : chunks_at) bounds.push_back(c * chunk);
        EXPECT_EQ(RunSplit(p, bounds, chunk, &pool), whole)
            << "m=" << m << " n=" << n << " slices=" << bounds.size() - 1;
      }
    }
  }
}

TEST_P(GemmFixedTest, AgreesWithFloatGemm) {
  const auto [isa, dtype] = GetParam();
  ScopedIsaForTesting force(isa);
  Rng rng(5);
  const int m = 3, n = 21, k = 1536;
  const Problem p = MakeProblem(rng, dtype, m, n, k);
  const std::vector<int64_t> fixed = RunSlice(p, 0, k, 64, nullptr);
  std::vector<float> y(static_cast<size_t>(m) * n);
  GemmParams g{
      .x = p.x.data(), .w = p.w.data(), .w_dtype = dtype, .y = y.data(), .m = m, .n = n, .k = k};
  ASSERT_TRUE(Gemm(g, Stream{}).ok());
  const std::vector<float> wf = DequantizeRows(dtype, p.w.data(), n, k);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double mag = 0;
      for (int kk = 0; kk < k; ++kk) mag += std::fabs(double{p.x[i * k + kk]} * wf[j * k + kk]);
      const double got = std::ldexp(static_cast<double>(fixed[i * n + j]), -kFixedPointShift);
      EXPECT_LT(std::fabs(got - y[i * n + j]) / mag, kTol) << "i=" << i << " j=" << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, GemmFixedTest,
    ::testing::Combine(::testing::Values(Isa::kPortable, Isa::kAvx2, Isa::kAvxVnni),
                       ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0,
                                         DType::kQ4_0, DType::kQ4_1)),
    [](const ::testing::TestParamInfo<FixedCase>& info) {
      return std::string(IsaName(std::get<0>(info.param))) + "_" +
             DTypeName(std::get<1>(info.param));
    });

// Quantized terms are exact integer dots times f32 scale products, formed in
// double the same way everywhere: the ISAs agree bit for bit (n = 7 also
// takes the x86 kernels' single-row remainder).
TEST(GemmFixedIsaParity, QuantizedIsBitIdenticalOnEveryIsa) {
  Rng rng(77);
  for (DType dtype : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    for (int n : {7, 64}) {
      const Problem p = MakeProblem(rng, dtype, 6, n, 576);
      std::vector<std::vector<int64_t>> out;
      for (Isa isa : {Isa::kPortable, Isa::kAvx2, Isa::kAvxVnni}) {
        ScopedIsaForTesting force(isa);
        out.push_back(RunSlice(p, 0, p.k, 32, nullptr));
      }
      EXPECT_EQ(out[1], out[0]) << DTypeName(dtype) << " n=" << n;
      EXPECT_EQ(out[2], out[0]) << DTypeName(dtype) << " n=" << n;
    }
  }
}

// Chunks that are not a multiple of 8 (odd head sizes) take the portable
// path on every ISA and stay split-invariant.
TEST(GemmFixedTest, OddChunk) {
  Rng rng(3);
  const Problem p = MakeProblem(rng, DType::kF32, 2, 9, 4 * 12);
  const std::vector<int64_t> whole = RunSlice(p, 0, p.k, 12, nullptr);
  EXPECT_EQ(RunSplit(p, {0, 12, 48}, 12, nullptr), whole);
  EXPECT_EQ(RunSplit(p, {0, 24, 36, 48}, 12, nullptr), whole);
}

TEST(GemmFixedTest, RejectsBiasAndBadChunk) {
  std::vector<float> x(64), w(2 * 64), bias(2);
  std::vector<int64_t> y(2);
  GemmParams g{.x = x.data(), .w = w.data(), .w_dtype = DType::kF32, .m = 1, .n = 2, .k = 64};
  g.y_fixed = y.data();
  g.bias = bias.data();
  EXPECT_EQ(Gemm(g, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  g.bias = nullptr;
  g.fixed_chunk = 24;  // does not divide 64
  EXPECT_EQ(Gemm(g, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  g.fixed_chunk = 16;
  EXPECT_TRUE(Gemm(g, Stream{}).ok());
}

// Terms beyond +-2^19 clamp instead of wrapping (documented range).
TEST(GemmFixedTest, LargeTermsClamp) {
  std::vector<float> x(32, 1e6f), w(32, 1.0f);
  int64_t y = 0;
  GemmParams g{.x = x.data(), .w = w.data(), .w_dtype = DType::kF32, .m = 1, .n = 1, .k = 32};
  g.y_fixed = &y;
  ASSERT_TRUE(Gemm(g, Stream{}).ok());
  EXPECT_EQ(y, int64_t{1} << 51);
}

TEST(AddFixedPointTest, RoundsOnce) {
  const std::vector<float> a = {1.0f, -2.5f, 0.0f, 3.0f};
  const std::vector<int64_t> b = {int64_t{1} << 32, -(int64_t{3} << 31), 1, -(int64_t{1} << 10)};
  std::vector<float> y(4);
  ASSERT_TRUE(AddFixedPoint({.a = a.data(), .b = b.data(), .y = y.data(), .n = 4}, Stream{}).ok());
  EXPECT_EQ(y[0], 2.0f);
  EXPECT_EQ(y[1], -4.0f);
  EXPECT_EQ(y[2], static_cast<float>(std::ldexp(1.0, -32)));
  // 3 - 2^-22 is not a float: one rounding from the exact double sum.
  EXPECT_EQ(y[3], static_cast<float>(3.0 - std::ldexp(1.0, -22)));
}

TEST(EmbeddingTest, NegativeZeroBecomesPositive) {
  std::vector<float> row(32, -0.0f);
  row[1] = -3.0f;
  const int32_t token = 0;
  std::vector<float> out(32, 7.0f);
  ASSERT_TRUE(Embedding({.table = row.data(),
                         .dtype = DType::kF32,
                         .tokens = &token,
                         .out = out.data(),
                         .num_tokens = 1,
                         .dim = 32,
                         .rows = 1,
                         .row_offset = 0},
                        Stream{})
                  .ok());
  EXPECT_FALSE(std::signbit(out[0]));
  EXPECT_EQ(out[1], -3.0f);
}

}  // namespace
}  // namespace tpserve::kernels::cpu
