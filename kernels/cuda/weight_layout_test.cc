// The GEMMs' device weight layout (weight_layout.h) byte for byte: where
// PackDeviceWeight puts each block's qs and scale bytes. A CPU test.
#include "kernels/cuda/weight_layout.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace tpserve::kernels::cuda {
namespace {

TEST(WeightLayout, QuantizedBlocksSplitIntoAlignedPlanes) {
  const int64_t rows = 3, cols = 64, blocks_per_row = 2;
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    SCOPED_TRACE(DTypeName(t));
    std::vector<uint8_t> src(static_cast<size_t>(rows * RowBytes(t, cols)));
    for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 7 + 1);
    const int64_t bytes = DeviceWeightBytes(t, rows, cols);
    ASSERT_EQ(bytes, static_cast<int64_t>(src.size()));
    std::vector<uint8_t> dst(static_cast<size_t>(bytes));
    PackDeviceWeight(t, rows, cols, src.data(), dst.data());
    const int64_t qb = QuantBytesPerBlock(t), sb = ScaleBytesPerBlock(t);
    const int64_t scales = ScalePlaneOffset(t, rows, cols);
    EXPECT_EQ(scales % 16, 0);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t b = 0; b < blocks_per_row; ++b) {
        const int64_t i = r * blocks_per_row + b;
        const uint8_t* block = src.data() + i * BlockBytes(t);
        EXPECT_EQ(std::memcmp(dst.data() + i * qb, block + sb, static_cast<size_t>(qb)), 0)
            << "qs of block " << r << "," << b;
        EXPECT_EQ(std::memcmp(dst.data() + scales + i * sb, block, static_cast<size_t>(sb)), 0)
            << "scales of block " << r << "," << b;
      }
    }
  }
}

TEST(WeightLayout, PlainRowsUnchanged) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    std::vector<uint8_t> src(static_cast<size_t>(5 * RowBytes(t, 7)));
    for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i);
    ASSERT_EQ(DeviceWeightBytes(t, 5, 7), static_cast<int64_t>(src.size()));
    std::vector<uint8_t> dst(src.size());
    PackDeviceWeight(t, 5, 7, src.data(), dst.data());
    EXPECT_EQ(dst, src) << DTypeName(t);
  }
  EXPECT_EQ(DeviceWeightBytes(DType::kQ4_1, 2, 33), -1);  // not whole blocks
}

}  // namespace
}  // namespace tpserve::kernels::cuda
