// Tensor element types tpserve reads from model files, their byte layouts, and
// scalar conversions. This header is the ground truth for quantized block
// layouts: readers, quantizers and kernels (CPU and CUDA) all follow it.
// Dependency-free on purpose (no abseil, no project headers).
//
// Block layouts (little-endian, packed, one block = kBlockValues values):
//   Q8_0: 32 values, 34 bytes = f16 d, int8 q[32];            x[i] = d * q[i]
//   Q4_0: 32 values, 18 bytes = f16 d, uint8 qs[16];          x[i] = d * (nib(i) - 8)
//   Q4_1: 32 values, 20 bytes = f16 d, f16 m, uint8 qs[16];   x[i] = d * nib(i) + m
//   where nib(i) = qs[i] & 0xF for i < 16 and qs[i - 16] >> 4 for i >= 16
//   (low nibbles hold the first half of the block, high nibbles the second).
//
//   int64_t bytes = RowBytes(DType::kQ4_1, 576);      // 18 blocks * 20 = 360
//   std::vector<float> row(576);
//   DequantizeRow(DType::kQ4_1, src, row.data(), 576);
#ifndef TPSERVE_FORMATS_DTYPE_H_
#define TPSERVE_FORMATS_DTYPE_H_

#include <array>
#include <cstdint>
#include <cstring>

namespace tpserve {

enum class DType { kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ4_1 };

// Values per quantization block (32) for the Q types, 1 for plain types.
constexpr int64_t kQuantBlockValues = 32;

// On-disk block structs; sizes are static_asserted so kernels may cast to them.
struct BlockQ8_0 {
  uint16_t d;     // f16 scale
  int8_t qs[32];  // quants
};
struct BlockQ4_0 {
  uint16_t d;      // f16 scale
  uint8_t qs[16];  // nibbles, low = values 0..15, high = values 16..31
};
struct BlockQ4_1 {
  uint16_t d;      // f16 scale
  uint16_t m;      // f16 min
  uint8_t qs[16];  // nibbles, as Q4_0
};
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block is 34 bytes");
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block is 18 bytes");
static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 block is 20 bytes");

// Values per block: 1 for F32/F16/BF16, 32 for the Q types.
constexpr int64_t BlockValues(DType t) {
  return (t == DType::kF32 || t == DType::kF16 || t == DType::kBF16) ? 1 : kQuantBlockValues;
}

// Bytes per block: element size for F32/F16/BF16, block size for the Q types.
constexpr int64_t BlockBytes(DType t) {
  switch (t) {
    case DType::kF32:
      return 4;
    case DType::kF16:
      return 2;
    case DType::kBF16:
      return 2;
    case DType::kQ8_0:
      return 34;
    case DType::kQ4_0:
      return 18;
    case DType::kQ4_1:
      return 20;
  }
  return 0;
}

constexpr bool IsQuantized(DType t) { return BlockValues(t) > 1; }

// Bytes of one row of `cols` values. For Q types `cols` must be a multiple of
// 32 (callers validate; a non-multiple returns -1).
constexpr int64_t RowBytes(DType t, int64_t cols) {
  const int64_t bv = BlockValues(t);
  if (cols < 0 || cols % bv != 0) return -1;
  return cols / bv * BlockBytes(t);
}

// "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1".
const char* DTypeName(DType t);

// ---- Scalar conversions (bit-exact, round-to-nearest-even; NaN stays NaN).
namespace internal {
// All 65536 halves as floats, built at compile time (constant-initialized, so
// safe to use from static initializers). A table load beats the branchy
// bit manipulation in the per-block scale reads of the quantized dot products.
extern const std::array<float, 65536> kF16ToF32Table;
}  // namespace internal
inline float F16ToF32(uint16_t h) { return internal::kF16ToF32Table[h]; }
uint16_t F32ToF16(float f);

inline float BF16ToF32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
uint16_t F32ToBF16(float f);

// ---- Dequantization of `n` consecutive values starting at a block boundary
// (`n` a multiple of 32 for Q types). `src` points at the first block/element.
void DequantizeRow(DType t, const void* src, float* dst, int64_t n);
// Same, rounded to bf16 (round-to-nearest-even from the f32 value).
void DequantizeRowBf16(DType t, const void* src, uint16_t* dst, int64_t n);

}  // namespace tpserve

#endif  // TPSERVE_FORMATS_DTYPE_H_
