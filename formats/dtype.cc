// Scalar conversions and row dequantization for the types in dtype.h.
#include "formats/dtype.h"

#include <bit>
#include <cstring>

namespace tpserve {
namespace {

uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

// Nibble i (0..31) of a 4-bit block: low nibbles first, then high nibbles.
inline int Nibble(const uint8_t* qs, int i) { return i < 16 ? (qs[i] & 0xF) : (qs[i - 16] >> 4); }

}  // namespace

namespace {

// The reference conversion the table is built from.
constexpr float F16ToF32Bits(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  if (exp == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));  // inf/NaN
  if (exp != 0) return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return std::bit_cast<float>(sign);  // +-0
  // Subnormal: normalise.
  int e = -1;
  do {
    ++e;
    mant <<= 1;
  } while ((mant & 0x400) == 0);
  return std::bit_cast<float>(sign | (static_cast<uint32_t>(112 - e) << 23) |
                              ((mant & 0x3FF) << 13));
}

constexpr std::array<float, 65536> MakeF16Table() {
  std::array<float, 65536> t{};
  for (uint32_t h = 0; h < 65536; ++h) t[h] = F16ToF32Bits(static_cast<uint16_t>(h));
  return t;
}

}  // namespace

namespace internal {
constexpr std::array<float, 65536> kF16ToF32Table = MakeF16Table();
}  // namespace internal

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kQ8_0:
      return "Q8_0";
    case DType::kQ4_0:
      return "Q4_0";
    case DType::kQ4_1:
      return "Q4_1";
  }
  return "?";
}

uint16_t F32ToF16(float f) {
  const uint32_t u = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  const uint32_t abs = u & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return sign | 0x7E00;   // NaN (quiet)
  if (abs >= 0x477FF000u) return sign | 0x7C00;  // overflow (rounds to inf) or inf
  if (abs < 0x38800000u) {                       // below the smallest normal f16
    if (abs < 0x33000000u) return sign;          // rounds to zero (<= 2^-25)
    // Subnormal: value = mant * 2^-24; shift with round-to-nearest-even.
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7FFFFF) | 0x800000;
    const uint32_t shift = 126 - e;  // 14..24 bits shifted out; keep m >> (shift)
    const uint32_t keep = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    uint32_t r = keep;
    if (rem > half || (rem == half && (keep & 1))) ++r;
    return sign | static_cast<uint16_t>(r);
  }
  // Normal: rebias exponent, round mantissa from 23 to 10 bits.
  uint32_t r = abs - 0x38000000u;  // exponent bias 127 -> 15
  const uint32_t rem = r & 0x1FFF;
  r >>= 13;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;  // may carry into exponent: fine
  return sign | static_cast<uint16_t>(r);
}

uint16_t F32ToBF16(float f) {
  const uint32_t u = FloatBits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  return static_cast<uint16_t>((static_cast<uint64_t>(u) + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

void DequantizeRow(DType t, const void* src, float* dst, int64_t n) {
  if (n <= 0) return;  // empty rows may come with null pointers
  const uint8_t* p = static_cast<const uint8_t*>(src);
  switch (t) {
    case DType::kF32:
      std::memcpy(dst, p, static_cast<size_t>(n) * 4);
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = F16ToF32(h);
      }
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = BF16ToF32(h);
      }
      return;
    case DType::kQ8_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        BlockQ8_0 blk;
        std::memcpy(&blk, p + b * sizeof(BlockQ8_0), sizeof(blk));
        const float d = F16ToF32(blk.d);
        for (int i = 0; i < 32; ++i) dst[b * 32 + i] = d * static_cast<float>(blk.qs[i]);
      }
      return;
    case DType::kQ4_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        BlockQ4_0 blk;
        std::memcpy(&blk, p + b * sizeof(BlockQ4_0), sizeof(blk));
        const float d = F16ToF32(blk.d);
        for (int i = 0; i < 32; ++i)
          dst[b * 32 + i] = d * static_cast<float>(Nibble(blk.qs, i) - 8);
      }
      return;
    case DType::kQ4_1:
      for (int64_t b = 0; b < n / 32; ++b) {
        BlockQ4_1 blk;
        std::memcpy(&blk, p + b * sizeof(BlockQ4_1), sizeof(blk));
        const float d = F16ToF32(blk.d);
        const float m = F16ToF32(blk.m);
        for (int i = 0; i < 32; ++i)
          dst[b * 32 + i] = d * static_cast<float>(Nibble(blk.qs, i)) + m;
      }
      return;
  }
}

void DequantizeRowBf16(DType t, const void* src, uint16_t* dst, int64_t n) {
  if (n <= 0) return;
  if (t == DType::kBF16) {
    std::memcpy(dst, src, static_cast<size_t>(n) * 2);
    return;
  }
  float tmp[256];
  const int64_t chunk = 256;  // multiple of 32, so Q blocks never straddle chunks
  const uint8_t* p = static_cast<const uint8_t*>(src);
  for (int64_t off = 0; off < n; off += chunk) {
    const int64_t len = n - off < chunk ? n - off : chunk;
    DequantizeRow(t, p + RowBytes(t, off), tmp, len);
    for (int64_t i = 0; i < len; ++i) dst[off + i] = F32ToBF16(tmp[i]);
  }
}

}  // namespace tpserve
