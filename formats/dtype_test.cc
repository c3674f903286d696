#include "formats/dtype.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace tpserve {
namespace {

TEST(DTypeTest, BlockSizes) {
  EXPECT_EQ(RowBytes(DType::kF32, 10), 40);
  EXPECT_EQ(RowBytes(DType::kF16, 10), 20);
  EXPECT_EQ(RowBytes(DType::kBF16, 10), 20);
  EXPECT_EQ(RowBytes(DType::kQ8_0, 576), 18 * 34);
  EXPECT_EQ(RowBytes(DType::kQ4_0, 64), 2 * 18);
  EXPECT_EQ(RowBytes(DType::kQ4_1, 576), 360);
  EXPECT_EQ(RowBytes(DType::kQ4_1, 33), -1);
  EXPECT_TRUE(IsQuantized(DType::kQ8_0));
  EXPECT_FALSE(IsQuantized(DType::kBF16));
  EXPECT_STREQ(DTypeName(DType::kQ4_1), "Q4_1");
}

TEST(DTypeTest, F16RoundTripsEveryFiniteHalf) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_EQ((h & 0x7C00), 0x7C00u);
      EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(f))));
      continue;
    }
    ASSERT_EQ(F32ToF16(f), h) << "half 0x" << std::hex << h;
  }
}

TEST(DTypeTest, F16KnownValuesAndRounding) {
  EXPECT_EQ(F16ToF32(0x3C00), 1.0f);
  EXPECT_EQ(F16ToF32(0xC000), -2.0f);
  EXPECT_EQ(F16ToF32(0x7BFF), 65504.0f);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(F32ToF16(65520.0f), 0x7C00);               // rounds to inf
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::infinity()), 0x7C00);
  // Halfway between 1 and the next half (1 + 2^-10): ties to even -> 1.
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  // Just above halfway rounds up.
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3C01);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even (zero)
  EXPECT_EQ(F32ToF16(std::ldexp(1.5f, -25)), 0x0001);
}

TEST(DTypeTest, BF16) {
  EXPECT_EQ(BF16ToF32(0x3F80), 1.0f);
  EXPECT_EQ(F32ToBF16(1.0f), 0x3F80);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even.
  EXPECT_EQ(F32ToBF16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(F32ToBF16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_TRUE(std::isnan(BF16ToF32(F32ToBF16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(DTypeTest, DequantizeQ8_0) {
  BlockQ8_0 b;
  b.d = F32ToF16(0.5f);
  for (int i = 0; i < 32; ++i) b.qs[i] = static_cast<int8_t>(i - 16);
  std::vector<float> out(32);
  DequantizeRow(DType::kQ8_0, &b, out.data(), 32);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], 0.5f * (i - 16));
}

TEST(DTypeTest, DequantizeQ4NibbleOrder) {
  BlockQ4_0 a;
  BlockQ4_1 b;
  a.d = b.d = F32ToF16(2.0f);
  b.m = F32ToF16(-1.0f);
  for (int i = 0; i < 16; ++i)
    a.qs[i] = b.qs[i] = static_cast<uint8_t>((i & 0xF) | ((15 - i) << 4));
  std::vector<float> x(32), y(32);
  DequantizeRow(DType::kQ4_0, &a, x.data(), 32);
  DequantizeRow(DType::kQ4_1, &b, y.data(), 32);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(x[i], 2.0f * (i - 8));              // low nibbles: first half
    EXPECT_EQ(x[16 + i], 2.0f * ((15 - i) - 8));  // high nibbles: second half
    EXPECT_EQ(y[i], 2.0f * i - 1.0f);
    EXPECT_EQ(y[16 + i], 2.0f * (15 - i) - 1.0f);
  }
}

TEST(DTypeTest, DequantizeBf16MatchesF32Path) {
  std::vector<BlockQ4_1> blocks(20);
  for (size_t k = 0; k < blocks.size(); ++k) {
    blocks[k].d = F32ToF16(0.01f * (k + 1));
    blocks[k].m = F32ToF16(-0.1f * k);
    for (int i = 0; i < 16; ++i) blocks[k].qs[i] = static_cast<uint8_t>(k * 7 + i * 13);
  }
  const int64_t n = 32 * 20;  // crosses the 256-value chunk boundary
  std::vector<float> f(n);
  std::vector<uint16_t> h(n);
  DequantizeRow(DType::kQ4_1, blocks.data(), f.data(), n);
  DequantizeRowBf16(DType::kQ4_1, blocks.data(), h.data(), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(h[i], F32ToBF16(f[i]));
}

}  // namespace
}  // namespace tpserve
