// RmsNorm, Rope, Swiglu, Add and Embedding against f64 references, both ISA
// variants, odd shapes, with and without threads.
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cpu/thread_pool.h"

namespace tpserve::kernels::cpu {
namespace {

// f32 evaluation of O(dim) terms against f64: NMSE ~1e-14 typical.
constexpr double kF32Tol = 1e-11;
// Swiglu goes through expf (<= 1 ulp) and a division.
constexpr double kSwigluTol = 1e-11;
// Rope: cos/sin are computed in f64 and rounded to f32 once; the rotation is
// two f32 products and a sum.
constexpr double kRopeTol = 1e-12;

class ElementwiseTest : public ::testing::TestWithParam<Isa> {
 protected:
  ElementwiseTest() : force_(GetParam()) {}
  ScopedIsaForTesting force_;
  ThreadPool pool_{2};
};

TEST_P(ElementwiseTest, RmsNorm) {
  Rng rng(1);
  for (int dim : {1, 7, 64, 577}) {
    for (int rows : {1, 3, 40}) {
      for (bool in_place : {false, true}) {
        std::vector<float> x = rng.Floats(static_cast<size_t>(rows) * dim, -3.0f, 3.0f);
        std::vector<float> w = rng.Floats(dim, 0.5f, 1.5f);
        std::vector<float> y(x.size());
        std::vector<double> want(x.size());
        const float eps = 1e-5f;
        for (int r = 0; r < rows; ++r) {
          double ss = 0.0;
          for (int i = 0; i < dim; ++i) ss += double{x[r * dim + i]} * x[r * dim + i];
          const double scale = 1.0 / std::sqrt(ss / dim + eps);
          for (int i = 0; i < dim; ++i) want[r * dim + i] = x[r * dim + i] * scale * w[i];
        }
        float* out = in_place ? x.data() : y.data();
        RmsNormParams p{
            .x = x.data(), .weight = w.data(), .y = out, .rows = rows, .dim = dim, .eps = eps};
        ASSERT_TRUE(RmsNorm(p, Stream{.pool = &pool_}).ok());
        EXPECT_LT(Nmse(in_place ? x : y, want), kF32Tol) << "rows=" << rows << " dim=" << dim;
      }
    }
  }
}

// Independent f64 RoPE: rotate each pair by pos * inv_freq(i).
double RefInvFreq(const RopeParams& p, int i) {
  double inv = 1.0 / std::pow(double{p.theta}, 2.0 * i / p.head_dim);
  if (p.scaling.type == RopeScaling::Type::kLinear) return inv / p.scaling.factor;
  if (p.scaling.type == RopeScaling::Type::kLlama3) {
    const double wavelen = 2.0 * std::numbers::pi / inv;
    const double lo = p.scaling.original_max_position / double{p.scaling.low_freq_factor};
    const double hi = p.scaling.original_max_position / double{p.scaling.high_freq_factor};
    if (wavelen < hi) return inv;
    if (wavelen > lo) return inv / p.scaling.factor;
    const double smooth = (p.scaling.original_max_position / wavelen - p.scaling.low_freq_factor) /
                          (p.scaling.high_freq_factor - p.scaling.low_freq_factor);
    return (1.0 - smooth) * inv / p.scaling.factor + smooth * inv;
  }
  return inv;
}

// Rotates `heads` heads per token, token t's first head at v + offset + t * stride.
void RefRope(const RopeParams& p, std::vector<double>& v, int64_t offset, int heads,
             int64_t stride) {
  const int half = p.head_dim / 2;
  for (int t = 0; t < p.tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      double* x = v.data() + offset + t * stride + int64_t{h} * p.head_dim;
      for (int i = 0; i < half; ++i) {
        const double a = static_cast<double>(p.positions[t]) * RefInvFreq(p, i);
        const int i0 = p.neox ? i : 2 * i;
        const int i1 = p.neox ? i + half : 2 * i + 1;
        const double x0 = x[i0], x1 = x[i1];
        x[i0] = x0 * std::cos(a) - x1 * std::sin(a);
        x[i1] = x0 * std::sin(a) + x1 * std::cos(a);
      }
    }
  }
}

TEST_P(ElementwiseTest, Rope) {
  Rng rng(2);
  for (RopeScaling::Type scaling :
       {RopeScaling::Type::kNone, RopeScaling::Type::kLinear, RopeScaling::Type::kLlama3}) {
    for (bool neox : {false, true}) {
      for (int head_dim : {2, 64, 128}) {
        const int tokens = 5, n_heads = 9, n_kv = 3;
        const int64_t q_stride = int64_t{n_heads + 2 * n_kv} * head_dim;  // fused qkv rows
        std::vector<float> qkv = rng.Floats(tokens * q_stride);
        std::vector<int32_t> pos = {0, 1, 17, 4095, 131071};
        RopeParams p;
        p.q = qkv.data();
        p.k = qkv.data() + int64_t{n_heads} * head_dim;
        p.positions = pos.data();
        p.tokens = tokens;
        p.n_heads = n_heads;
        p.n_kv_heads = n_kv;
        p.head_dim = head_dim;
        p.q_stride = q_stride;
        p.k_stride = q_stride;
        p.theta = 500000.0f;
        p.neox = neox;
        p.scaling.type = scaling;
        p.scaling.factor = 8.0f;
        p.scaling.low_freq_factor = 1.0f;
        p.scaling.high_freq_factor = 4.0f;
        p.scaling.original_max_position = 8192;
        std::vector<double> expect(qkv.begin(), qkv.end());
        RefRope(p, expect, 0, n_heads, q_stride);
        RefRope(p, expect, int64_t{n_heads} * head_dim, n_kv, q_stride);
        ASSERT_TRUE(Rope(p, Stream{.pool = &pool_}).ok());
        EXPECT_LT(Nmse(qkv, expect), kRopeTol)
            << "scaling=" << static_cast<int>(scaling) << " neox=" << neox << " hd=" << head_dim;
      }
    }
  }
}

TEST_P(ElementwiseTest, Swiglu) {
  Rng rng(3);
  for (int dim : {1, 9, 1536}) {
    const int rows = 3;
    std::vector<float> gate = rng.Floats(rows * dim, -6.0f, 6.0f);
    // Extremes exercise FastExp's clamp.
    for (float g : {-300.0f, -88.5f, 88.5f, 300.0f}) gate[rng.Int(0, rows * dim - 1)] = g;
    std::vector<float> up = rng.Floats(rows * dim);
    std::vector<float> out(rows * dim);
    std::vector<double> want(out.size());
    for (size_t i = 0; i < want.size(); ++i)
      want[i] = gate[i] / (1.0 + std::exp(-double{gate[i]})) * up[i];
    SwigluParams p{
        .gate = gate.data(), .up = up.data(), .out = out.data(), .rows = rows, .dim = dim};
    ASSERT_TRUE(Swiglu(p, Stream{.pool = &pool_}).ok());
    EXPECT_LT(Nmse(out, want), kSwigluTol) << "dim=" << dim;
  }
}

TEST_P(ElementwiseTest, AddIsExact) {
  Rng rng(4);
  for (int64_t n : {1, 15, 100003}) {
    std::vector<float> a = rng.Floats(n), b = rng.Floats(n), y(n);
    AddParams p{.a = a.data(), .b = b.data(), .y = y.data(), .n = n};
    ASSERT_TRUE(Add(p, Stream{.pool = &pool_}).ok());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], a[i] + b[i]);
  }
}

TEST_P(ElementwiseTest, EmbeddingDequantisesRowsAndZeroesOtherShards) {
  Rng rng(5);
  for (DType t :
       {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    const int rows = 11, dim = 64, offset = 100;
    std::vector<uint8_t> table = RandomRows(rng, t, rows, dim);
    std::vector<float> deq = DequantizeRows(t, table.data(), rows, dim);
    std::vector<int32_t> tokens = {100, 110, 99, 111, 105, 0};
    std::vector<float> out(tokens.size() * dim, 1.0f);
    EmbeddingParams p{.table = table.data(),
                      .dtype = t,
                      .tokens = tokens.data(),
                      .out = out.data(),
                      .num_tokens = static_cast<int>(tokens.size()),
                      .dim = dim,
                      .rows = rows,
                      .row_offset = offset};
    ASSERT_TRUE(Embedding(p, Stream{.pool = &pool_}).ok());
    for (size_t i = 0; i < tokens.size(); ++i) {
      const int r = tokens[i] - offset;
      for (int j = 0; j < dim; ++j) {
        const float want = (r >= 0 && r < rows) ? deq[r * dim + j] : 0.0f;
        ASSERT_EQ(out[i * dim + j], want) << DTypeName(t) << " token " << tokens[i];
      }
    }
  }
}

TEST_P(ElementwiseTest, RejectsBadParams) {
  std::vector<float> x(8);
  RopeParams rope{.q = x.data(), .positions = nullptr, .tokens = 1, .n_heads = 1, .head_dim = 8};
  EXPECT_EQ(Rope(rope, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  int32_t pos = 0;
  rope.positions = &pos;
  rope.head_dim = 7;
  EXPECT_EQ(Rope(rope, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  EmbeddingParams emb{.table = x.data(),
                      .dtype = DType::kQ4_1,
                      .tokens = &pos,
                      .out = x.data(),
                      .num_tokens = 1,
                      .dim = 8,
                      .rows = 1};
  EXPECT_EQ(Embedding(emb, Stream{}).code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(BothIsas, ElementwiseTest, ::testing::Values(Isa::kPortable, Isa::kAvx2),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return std::string(IsaName(info.param));
                         });

}  // namespace
}  // namespace tpserve::kernels::cpu
