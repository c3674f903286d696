// Round-trip bounds for the reference quantizers. Bit-exactness against the
// gguf package's numpy quantizers is checked in reference_test.
#include "worker/model/quantize.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

std::vector<float> RandomRow(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// Max |x - dequant(quant(x))| within each block must stay under `steps` of
// the block's quantization step.
void CheckRoundTrip(DType t, float step_divisor, float steps) {
  const int64_t n = 32 * 64;
  const std::vector<float> x = RandomRow(n, 42);
  std::vector<uint8_t> q(RowBytes(t, n));
  QuantizeRow(t, x.data(), q.data(), n);
  std::vector<float> y(n);
  DequantizeRow(t, q.data(), y.data(), n);
  for (int64_t b = 0; b < n / 32; ++b) {
    float lo = x[b * 32], hi = x[b * 32], amax = 0;
    for (int i = 0; i < 32; ++i) {
      lo = std::fmin(lo, x[b * 32 + i]);
      hi = std::fmax(hi, x[b * 32 + i]);
      amax = std::fmax(amax, std::fabs(x[b * 32 + i]));
    }
    const float step = (t == DType::kQ4_1 ? hi - lo : amax) / step_divisor;
    for (int i = 0; i < 32; ++i) {
      ASSERT_LE(std::fabs(x[b * 32 + i] - y[b * 32 + i]), steps * step + 1e-3f)
          << DTypeName(t) << " block " << b << " value " << i;
    }
  }
}

TEST(QuantizeTest, Q8_0WithinHalfStep) { CheckRoundTrip(DType::kQ8_0, 127.0f, 0.5f); }
TEST(QuantizeTest, Q4_1WithinHalfStep) { CheckRoundTrip(DType::kQ4_1, 15.0f, 0.5f); }
TEST(QuantizeTest, Q4_0WithinOneStep) { CheckRoundTrip(DType::kQ4_0, 8.0f, 1.0f); }

TEST(QuantizeTest, ZeroBlockQuantizesToZero) {
  const std::vector<float> x(32, 0.0f);
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    std::vector<uint8_t> q(RowBytes(t, 32));
    QuantizeRow(t, x.data(), q.data(), 32);
    std::vector<float> y(32, 1.0f);
    DequantizeRow(t, q.data(), y.data(), 32);
    for (float v : y) EXPECT_EQ(v, 0.0f) << DTypeName(t);
  }
}

TEST(QuantizeTest, PlainTypesRoundTrip) {
  const std::vector<float> x = RandomRow(64, 7);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    std::vector<uint8_t> q(RowBytes(t, 64));
    QuantizeRow(t, x.data(), q.data(), 64);
    std::vector<float> y(64);
    DequantizeRow(t, q.data(), y.data(), 64);
    const float tol = t == DType::kF32 ? 0.0f : (t == DType::kF16 ? 1e-3f : 1e-2f);
    for (int i = 0; i < 64; ++i) EXPECT_NEAR(x[i], y[i], tol) << DTypeName(t);
  }
}

}  // namespace
}  // namespace tpserve
