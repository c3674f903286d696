// cpu::Gemm against a naive reference: dequantise the weights with dtype.h,
// multiply in double. Both ISA variants, every weight dtype, odd shapes,
// strides, bias, threads. Isas the CPU lacks run as the best one it has.
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

// Two checks per output:
// 1. Exactness: against a reference that applies the documented activation
//    rounding (ActBlock: d = amax / 127, q = round(x / d)) and then computes in
//    f64, the error divided by sum_k |x_k w_k| (the magnitude f32 accumulation
//    error scales with) must stay under kExactTol. f32 summation of k <= 1536
//    terms is typically ~sqrt(k) * 6e-8 = 2e-6 of that magnitude.
// 2. Accuracy: against plain f64 math on unrounded activations, the NMSE over
//    the whole output (ggml test-backend-ops' measure) must stay under
//    kQuantizedNmseTol for quantized weights (8-bit activations give ~1e-5 on
//    random data; ggml allows 5e-4) -- only for outputs of >= 32 values, as
//    the NMSE of a handful of values that cancel to ~0 is meaningless.
constexpr double kExactTol = 1e-5;
constexpr double kQuantizedNmseTol = 2e-4;

struct Shape {
  int m, n, k;
};

// x as the kernel sees it: each block of 32 rounded to d * q.
std::vector<float> RoundActivations(const std::vector<float>& x) {
  std::vector<float> r(x.size());
  for (size_t b = 0; b + 32 <= x.size(); b += 32) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; ++j) r[b + j] = d * std::nearbyint(x[b + j] * id);
  }
  return r;
}

struct Reference {
  std::vector<double> y;    // (m, n)
  std::vector<double> mag;  // (m, n) sum_k |x w| + |bias|
};

Reference Compute(const std::vector<float>& x, int64_t x_stride, const std::vector<float>& w,
                  const std::vector<float>& bias, const Shape& s) {
  Reference r;
  r.y.resize(static_cast<size_t>(s.m) * s.n);
  r.mag.resize(r.y.size());
  for (int i = 0; i < s.m; ++i) {
    for (int j = 0; j < s.n; ++j) {
      double acc = bias.empty() ? 0.0 : bias[j];
      double mag = std::fabs(acc);
      for (int kk = 0; kk < s.k; ++kk) {
        const double t =
            static_cast<double>(x[i * x_stride + kk]) * w[static_cast<size_t>(j) * s.k + kk];
        acc += t;
        mag += std::fabs(t);
      }
      r.y[static_cast<size_t>(i) * s.n + j] = acc;
      r.mag[static_cast<size_t>(i) * s.n + j] = mag;
    }
  }
  return r;
}

double ExactError(const std::vector<float>& got, const Reference& ref) {
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    worst = std::max(worst, std::fabs(got[i] - ref.y[i]) / std::max(ref.mag[i], 1e-30));
  }
  return worst;
}

using GemmCase = std::tuple<Isa, DType>;

class GemmTest : public ::testing::TestWithParam<GemmCase> {};

TEST_P(GemmTest, MatchesReference) {
  const auto [isa, dtype] = GetParam();
  ScopedIsaForTesting force(isa);
  Rng rng(1234 + static_cast<int>(dtype));
  ThreadPool pool(3);
  // {130, 5, 577} spans two activation panels of the AVX2 and AVX-512
  // kernels (~256 KiB); {16, 37, 577} is the AVX-512 float kernel's largest
  // m with weights converted in registers (tiles of 6, 6 and 4 rows).
  const std::vector<Shape> shapes =
      IsQuantized(dtype)
          ? std::vector<Shape>{{1, 1, 32},   {1, 13, 96}, {3, 7, 64},    {5, 33, 576},
                               {17, 9, 160}, {4, 6, 32},  {150, 5, 1536}}
          : std::vector<Shape>{{1, 1, 1},   {1, 13, 37}, {3, 7, 64},    {5, 33, 577},
                               {17, 9, 15}, {4, 6, 8},   {130, 5, 577}, {16, 37, 577}};
  for (const Shape& s : shapes) {
    for (bool with_bias : {false, true}) {
      for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
        const int64_t x_stride = s.k + 3;  // exercise strides
        const int64_t y_stride = s.n + 2;
        std::vector<float> x = rng.Floats(static_cast<size_t>(s.m) * x_stride, -2.0f, 2.0f);
        std::vector<uint8_t> w = RandomRows(rng, dtype, s.n, s.k);
        std::vector<float> bias = with_bias ? rng.Floats(s.n) : std::vector<float>{};
        std::vector<float> y(static_cast<size_t>(s.m) * y_stride, -7.0f);
        GemmParams gp;
        gp.x = x.data();
        gp.x_stride = x_stride;
        gp.w = w.data();
        gp.w_dtype = dtype;
        gp.bias = with_bias ? bias.data() : nullptr;
        gp.y = y.data();
        gp.y_stride = y_stride;
        gp.m = s.m;
        gp.n = s.n;
        gp.k = s.k;
        ASSERT_TRUE(Gemm(gp, Stream{.pool = p}).ok());
        const std::vector<float> wf = DequantizeRows(dtype, w.data(), s.n, s.k);
        std::vector<float> x_used = x;
        if (IsQuantized(dtype)) {
          for (int i = 0; i < s.m; ++i) {
            std::vector<float> row(x.begin() + i * x_stride, x.begin() + i * x_stride + s.k);
            row = RoundActivations(row);
            std::copy(row.begin(), row.end(), x_used.begin() + i * x_stride);
          }
        }
        const Reference exact = Compute(x_used, x_stride, wf, bias, s);
        const Reference plain = Compute(x, x_stride, wf, bias, s);
        std::vector<float> got;
        for (int i = 0; i < s.m; ++i) {
          for (int j = 0; j < s.n; ++j) got.push_back(y[i * y_stride + j]);
          for (int64_t j = s.n; j < y_stride; ++j) ASSERT_EQ(y[i * y_stride + j], -7.0f);
        }
        EXPECT_LT(ExactError(got, exact), kExactTol) << "m=" << s.m << " n=" << s.n << " k=" << s.k;
        if (got.size() >= 32) {
          EXPECT_LT(Nmse(got, plain.y), IsQuantized(dtype) ? kQuantizedNmseTol : 1e-10)
              << "m=" << s.m << " n=" << s.n << " k=" << s.k;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, GemmTest,
    ::testing::Combine(::testing::Values(Isa::kPortable, Isa::kAvx2, Isa::kAvxVnni, Isa::kAmx),
                       ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0,
                                         DType::kQ4_0, DType::kQ4_1)),
    [](const ::testing::TestParamInfo<GemmCase>& info) {
      return std::string(IsaName(std::get<0>(info.param))) + "_" +
             DTypeName(std::get<1>(info.param));
    });

// The block-int32 arithmetic of the AMX and AVX-512 VNNI quantized kernels
// (gemm_packed_x86.inc), in scalar code: activations rounded per block as
// RoundActivations does (q = round(x / d), d = amax / 127), each block's
// integer dot exact, then per output over the blocks in order
//   acc = fma(float(isum), d_w * d_x, acc)
//   acc = fma(off, d_x * float(sum(q)), acc)   Q4_1 off = m_w, Q4_0 off = -8 d_w
// and y = acc + bias.
std::vector<float> BlockInt32Gemm(DType t, const std::vector<float>& x,
                                  const std::vector<uint8_t>& w, const std::vector<float>& bias,
                                  int m, int n, int k) {
  const int nb = k / 32;
  const int64_t row_bytes = RowBytes(t, k);
  std::vector<float> y(static_cast<size_t>(m) * n);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (int b = 0; b < nb; ++b) {
        const float* xv = x.data() + static_cast<size_t>(i) * k + 32 * b;
        float amax = 0.0f;
        for (int v = 0; v < 32; ++v) amax = std::fmax(amax, std::fabs(xv[v]));
        const float dx = amax / 127.0f;
        const float id = dx != 0.0f ? 1.0f / dx : 0.0f;
        const uint8_t* blk = w.data() + j * row_bytes + b * BlockBytes(t);
        uint16_t h[2];
        std::memcpy(h, blk, 4);
        const float dw = F16ToF32(h[0]);
        int32_t isum = 0, xsum = 0;
        for (int v = 0; v < 32; ++v) {
          const int q = static_cast<int>(std::nearbyint(xv[v] * id));
          int wq;
          if (t == DType::kQ8_0) {
            wq = static_cast<int8_t>(blk[2 + v]);
          } else {
            const uint8_t byte = blk[(t == DType::kQ4_1 ? 4 : 2) + v % 16];
            wq = v < 16 ? byte & 0xF : byte >> 4;
          }
          isum += wq * q;
          xsum += q;
        }
        acc = std::fma(static_cast<float>(isum), dw * dx, acc);
        const float s = dx * static_cast<float>(xsum);
        if (t == DType::kQ4_1) acc = std::fma(F16ToF32(h[1]), s, acc);
        if (t == DType::kQ4_0) acc = std::fma(dw * -8.0f, s, acc);
      }
      y[static_cast<size_t>(i) * n + j] = acc + bias[j];
    }
  }
  return y;
}

// The x86 variants quantize activations exactly as the portable one and
// take the same integer dot products. The AVX2 and AVX-VNNI kernels differ
// from portable only in f32 summation order, and AVX-VNNI's vpdpbusd gives
// the same integers as AVX2's maddubs + madd in the same order, so the two
// match bit for bit -- except where AVX-512 VNNI takes the quantized GEMM at
// kAvxVnni: then it is the block-int32 arithmetic (GemmBlockInt32 below).
TEST(GemmIsaParity, X86VariantsMatchPortable) {
  if (DetectedIsa() < Isa::kAvx2) GTEST_SKIP() << "skipped: CPU has no AVX2";
  Rng rng(7);
  for (DType dtype : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kBF16}) {
    for (int m : {1, 6}) {
      const int n = 50, k = 1536;
      std::vector<float> x = rng.Floats(static_cast<size_t>(m) * k);
      std::vector<uint8_t> w = RandomRows(rng, dtype, n, k);
      auto run = [&](Isa isa) {
        std::vector<float> y(m * n);
        ScopedIsaForTesting force(isa);
        GemmParams gp{
            .x = x.data(), .w = w.data(), .w_dtype = dtype, .y = y.data(), .m = m, .n = n, .k = k};
        EXPECT_TRUE(Gemm(gp, Stream{}).ok());
        return y;
      };
      const std::vector<float> portable = run(Isa::kPortable);
      const std::vector<float> avx2 = run(Isa::kAvx2);
      // f32 reassociation only: 1e-11 NMSE.
      EXPECT_LT(Nmse(avx2, portable), 1e-11) << DTypeName(dtype) << " m=" << m;
      if (DetectedIsa() < Isa::kAvxVnni) continue;
      const bool avx512 = dtype == DType::kBF16 ? HasAvx512() : HasAvx512Vnni();
      if (avx512) {
        // Another order of the same products (BF16: 16-lane FMA; quantized:
        // whole blocks in int32).
        EXPECT_LT(Nmse(run(Isa::kAvxVnni), portable), 1e-11) << DTypeName(dtype) << " m=" << m;
      } else {
        EXPECT_EQ(run(Isa::kAvxVnni), avx2) << DTypeName(dtype) << " m=" << m;
      }
      if (DetectedIsa() >= Isa::kAmx) {
        EXPECT_LT(Nmse(run(Isa::kAmx), portable), 1e-11) << DTypeName(dtype) << " m=" << m;
      }
    }
  }
}

// The kernels of the block-int32 arithmetic (AMX tiles and AVX-512 VNNI for
// GEMM, the shared 16-row GEMV for m = 1) give the scalar reference's bits for
// every m: GEMV, 8-row steps and their tails (m = 2, 9, 17, 33; AMX: 16-row
// tiles), weight-row tails (n % 16 != 0), bias, and a thread pool that splits
// the weight rows unevenly.
TEST(GemmBlockInt32, EveryKernelGivesTheReferenceBits) {
  std::vector<Isa> isas;
  if (DetectedIsa() >= Isa::kAvxVnni && HasAvx512Vnni()) isas.push_back(Isa::kAvxVnni);
  if (DetectedIsa() >= Isa::kAmx) isas.push_back(Isa::kAmx);
  if (isas.empty()) {
    GTEST_SKIP() << "skipped: no AVX-512 VNNI or AMX here (" << IsaName(DetectedIsa()) << ")";
  }
  Rng rng(11);
  ThreadPool pool(2);
  for (Isa isa : isas) {
    ScopedIsaForTesting force(isa);
    for (DType dtype : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
      for (int m : {1, 2, 9, 17, 33}) {
        const int n = 45, k = 1536;
        std::vector<float> x = rng.Floats(static_cast<size_t>(m) * k, -3.0f, 3.0f);
        std::vector<uint8_t> w = RandomRows(rng, dtype, n, k);
        std::vector<float> bias = rng.Floats(n);
        std::vector<float> y(static_cast<size_t>(m) * n);
        GemmParams gp{.x = x.data(),
                      .w = w.data(),
                      .w_dtype = dtype,
                      .bias = bias.data(),
                      .y = y.data(),
                      .m = m,
                      .n = n,
                      .k = k};
        ASSERT_TRUE(Gemm(gp, Stream{.pool = &pool}).ok());
        EXPECT_EQ(y, BlockInt32Gemm(dtype, x, w, bias, m, n, k))
            << IsaName(isa) << " " << DTypeName(dtype) << " m=" << m;
      }
    }
  }
}

// exact = true: quantized weights against unrounded activations, to f32
// accumulation accuracy (the reference mode for other backends).
TEST_P(GemmTest, ExactModeMatchesF64) {
  const auto [isa, dtype] = GetParam();
  if (!IsQuantized(dtype)) GTEST_SKIP() << "exact only changes quantized weights";
  ScopedIsaForTesting force(isa);
  Rng rng(99);
  ThreadPool pool(2);
  for (const Shape& s : std::vector<Shape>{{1, 9, 64}, {7, 21, 576}}) {
    std::vector<float> x = rng.Floats(static_cast<size_t>(s.m) * s.k, -2.0f, 2.0f);
    std::vector<uint8_t> w = RandomRows(rng, dtype, s.n, s.k);
    std::vector<float> bias = rng.Floats(s.n);
    std::vector<float> y(static_cast<size_t>(s.m) * s.n);
    GemmParams gp{.x = x.data(),
                  .w = w.data(),
                  .w_dtype = dtype,
                  .bias = bias.data(),
                  .y = y.data(),
                  .m = s.m,
                  .n = s.n,
                  .k = s.k,
                  .exact = true};
    ASSERT_TRUE(Gemm(gp, Stream{.pool = &pool}).ok());
    const Reference ref = Compute(x, s.k, DequantizeRows(dtype, w.data(), s.n, s.k), bias, s);
    EXPECT_LT(ExactError(y, ref), kExactTol) << "m=" << s.m << " n=" << s.n;
  }
}

// A row's output must not depend on the other rows in the batch or on the
// thread count (the engine's batch invariance): GEMV (m = 1) and every GEMM
// tile shape perform the same operations per output, so results match bit for
// bit.
TEST_P(GemmTest, RowsAreBatchInvariant) {
  const auto [isa, dtype] = GetParam();
  ScopedIsaForTesting force(isa);
  Rng rng(21);
  ThreadPool pool(2), four(4);
  const int n = 37, k = 576, m = 9;
  std::vector<float> x = rng.Floats(static_cast<size_t>(m) * k);
  std::vector<uint8_t> w = RandomRows(rng, dtype, n, k);
  std::vector<float> bias = rng.Floats(n);
  std::vector<float> all(static_cast<size_t>(m) * n);
  GemmParams gp{.x = x.data(),
                .w = w.data(),
                .w_dtype = dtype,
                .bias = bias.data(),
                .y = all.data(),
                .m = m,
                .n = n,
                .k = k};
  ASSERT_TRUE(Gemm(gp, Stream{.pool = &four}).ok());
  for (int i = 0; i < m; ++i) {
    for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
      std::vector<float> one(n);
      GemmParams g1 = gp;
      g1.x = x.data() + static_cast<size_t>(i) * k;
      g1.y = one.data();
      g1.m = 1;
      ASSERT_TRUE(Gemm(g1, Stream{.pool = p}).ok());
      EXPECT_EQ(one, std::vector<float>(all.begin() + i * n, all.begin() + (i + 1) * n))
          << "row " << i;
    }
  }
}

// GemmMulti (fused QKV / gate-up) gives exactly what separate Gemm calls
// give: same activation quantization, same tiles.
TEST(GemmMultiTest, MatchesSeparateCallsBitForBit) {
  Rng rng(5);
  ThreadPool pool(2);
  for (int m : {1, 6}) {
    const int k = 96;
    const std::vector<DType> types = {DType::kQ4_1, DType::kQ8_0, DType::kF32, DType::kQ4_0};
    const std::vector<int> ns = {13, 7, 5, 33};
    const int total = 13 + 7 + 5 + 33;
    std::vector<float> x = rng.Floats(static_cast<size_t>(m) * k);
    std::vector<std::vector<uint8_t>> ws;
    std::vector<float> fused(static_cast<size_t>(m) * total), separate(fused.size());
    std::vector<GemmParams> parts;
    int offset = 0;
    for (size_t i = 0; i < types.size(); ++i) {
      ws.push_back(RandomRows(rng, types[i], ns[i], k));
      GemmParams gp{.x = x.data(),
                    .w = ws.back().data(),
                    .w_dtype = types[i],
                    .y = fused.data() + offset,
                    .m = m,
                    .n = ns[i],
                    .k = k,
                    .y_stride = total};
      parts.push_back(gp);
      gp.y = separate.data() + offset;
      ASSERT_TRUE(Gemm(gp, Stream{.pool = &pool}).ok());
      offset += ns[i];
    }
    ASSERT_TRUE(GemmMulti(parts, Stream{.pool = &pool}).ok());
    EXPECT_EQ(fused, separate) << "m=" << m;

    parts[1].k = 64;  // parts must agree on the activations
    EXPECT_EQ(GemmMulti(parts, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(GemmValidation, RejectsBadShapes) {
  std::vector<float> x(64), y(4);
  std::vector<uint8_t> w(4 * 40);
  GemmParams gp{.x = x.data(),
                .w = w.data(),
                .w_dtype = DType::kQ4_1,
                .y = y.data(),
                .m = 1,
                .n = 2,
                .k = 33};
  EXPECT_EQ(Gemm(gp, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  gp.k = 32;
  gp.w = nullptr;
  EXPECT_EQ(Gemm(gp, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  gp.w = w.data();
  gp.x_stride = 16;
  EXPECT_EQ(Gemm(gp, Stream{}).code(), absl::StatusCode::kInvalidArgument);
  gp.x_stride = 0;
  EXPECT_TRUE(Gemm(gp, Stream{}).ok());
}

}  // namespace
}  // namespace tpserve::kernels::cpu
