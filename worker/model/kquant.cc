// K-quant decoders. Each writes one 256-value block. Value v of a block lies
// in sub-block v / 16 (Q2_K, Q3_K, Q6_K) or v / 32 (Q4_K, Q5_K); the bit
// positions are spelled out per type. The f32 arithmetic order (d * sc
// rounded first, then * q, then - dmin * m) is the reference one; the BUILD
// compiles this file with -ffp-contract=off so no FMA changes a rounding.
#include "worker/model/kquant.h"

#include "common/check.h"
#include "formats/dtype.h"

namespace tpserve {
namespace {

constexpr int kK = static_cast<int>(kKQuantBlockValues);

uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
float LoadF16(const uint8_t* p) { return F16ToF32(LoadU16(p)); }

// Q2_K: scales[0..15] | qs[16..79] | d[80..81] | dmin[82..83].
// Value v = 128 * h + 32 * j + l (h < 2, j < 4, l < 32) holds bits 2j..2j+1 of
// qs[32 * h + l]; sub-block s = v / 16 has scale scales[s] & 15 and min
// scales[s] >> 4.
void DequantQ2_K(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = LoadF16(b + 80), dmin = LoadF16(b + 82);
  for (int v = 0; v < kK; ++v) {
    const int h = v / 128, j = (v / 32) % 4, l = v % 32;
    const uint8_t sc = scales[v / 16];
    const float dl = d * static_cast<float>(sc & 0xF);
    const float ml = dmin * static_cast<float>(sc >> 4);
    const int q = (qs[32 * h + l] >> (2 * j)) & 3;
    y[v] = dl * static_cast<float>(q) - ml;
  }
}

// Q3_K: hmask[0..31] | qs[32..95] | scales[96..107] | d[108..109].
// Low two bits of value v = 128 * h + 32 * j + l: bits 2j..2j+1 of
// qs[32 * h + l] (as Q2_K). Third bit: bit v / 32 of hmask[v % 32]; when it is
// clear the value is offset by -4. Sub-block s = v / 16 has the 6-bit scale
// (low nibble of scales[s % 8], the high one for s >= 8) | (bits 2(s/4)..+1 of
// scales[8 + s % 4]) << 4, minus 32.
void DequantQ3_K(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  const float d = LoadF16(b + 108);
  float dl[16];
  for (int s = 0; s < 16; ++s) {
    const int lo = (s < 8 ? sc[s] : sc[s - 8] >> 4) & 0xF;
    const int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    dl[s] = d * static_cast<float>((lo | (hi << 4)) - 32);
  }
  for (int v = 0; v < kK; ++v) {
    const int h = v / 128, j = (v / 32) % 4, l = v % 32;
    const int low = (qs[32 * h + l] >> (2 * j)) & 3;
    const int high = (hmask[l] >> (v / 32)) & 1;
    y[v] = dl[v / 16] * static_cast<float>(low - (high ? 0 : 4));
  }
}

// The 6-bit scale and min of sub-block s < 8 in the 12 packed bytes shared by
// Q4_K and Q5_K: for s < 4, the low 6 bits of p[s] (scale) and p[s + 4]
// (min); for s >= 4, the low (scale) / high (min) nibble of p[s + 4] with
// the top two bits of p[s - 4] / p[s] as bits 4..5.
void ScaleMinK4(const uint8_t* p, int s, int* sc, int* m) {
  if (s < 4) {
    *sc = p[s] & 63;
    *m = p[s + 4] & 63;
  } else {
    *sc = (p[s + 4] & 0xF) | ((p[s - 4] >> 6) << 4);
    *m = (p[s + 4] >> 4) | ((p[s] >> 6) << 4);
  }
}

// Q4_K: d[0..1] | dmin[2..3] | scales[4..15] | qs[16..143].
// Q5_K: d[0..1] | dmin[2..3] | scales[4..15] | qh[16..47] | qs[48..175].
// Value v of sub-block s = v / 32, l = v % 32: low 4 bits are the low (s
// even) or high (s odd) nibble of qs[32 * (s / 2) + l]; Q5_K's fifth bit is
// bit s of qh[l].
void DequantQ45_K(const uint8_t* b, bool five, float* y) {
  const float d = LoadF16(b), dmin = LoadF16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = five ? b + 48 : b + 16;
  for (int s = 0; s < 8; ++s) {
    int sc = 0, m = 0;
    ScaleMinK4(scales, s, &sc, &m);
    const float ds = d * static_cast<float>(sc);
    const float ms = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) {
      int q = (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 0xF;
      if (five) q |= ((qh[l] >> s) & 1) << 4;
      y[32 * s + l] = ds * static_cast<float>(q) - ms;
    }
  }
}

// Q6_K: ql[0..127] | qh[128..191] | scales[192..207] (int8) | d[208..209].
// Value v = 128 * h + r (h < 2, r < 128): low 4 bits are the low (r < 64) or
// high (r >= 64) nibble of ql[64 * h + r % 64]; high 2 bits are bits
// 2(r/32)..+1 of qh[32 * h + r % 32]; q - 32 times d * scales[v / 16].
void DequantQ6_K(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = LoadF16(b + 208);
  for (int v = 0; v < kK; ++v) {
    const int h = v / 128, r = v % 128;
    const int low = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0xF;
    const int high = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
    const float ds = d * static_cast<float>(scales[v / 16]);
    y[v] = ds * static_cast<float>((low | (high << 4)) - 32);
  }
}

}  // namespace

std::optional<KQuantType> KQuantFromGgml(uint32_t ggml_type) {
  if (ggml_type >= 10 && ggml_type <= 14) return static_cast<KQuantType>(ggml_type);
  return std::nullopt;
}

int64_t KQuantBlockBytes(KQuantType t) {
  switch (t) {
    case KQuantType::kQ2_K:
      return 84;
    case KQuantType::kQ3_K:
      return 110;
    case KQuantType::kQ4_K:
      return 144;
    case KQuantType::kQ5_K:
      return 176;
    case KQuantType::kQ6_K:
      return 210;
  }
  return 0;
}

const char* KQuantName(KQuantType t) {
  switch (t) {
    case KQuantType::kQ2_K:
      return "Q2_K";
    case KQuantType::kQ3_K:
      return "Q3_K";
    case KQuantType::kQ4_K:
      return "Q4_K";
    case KQuantType::kQ5_K:
      return "Q5_K";
    case KQuantType::kQ6_K:
      return "Q6_K";
  }
  return "?";
}

int64_t KQuantRowBytes(KQuantType t, int64_t cols) {
  if (cols <= 0 || cols % kKQuantBlockValues != 0) return -1;
  return cols / kKQuantBlockValues * KQuantBlockBytes(t);
}

void DequantizeKQuantRow(KQuantType t, const void* src, float* dst, int64_t n) {
  TPS_CHECK_EQ(n % kKQuantBlockValues, 0) << KQuantName(t) << " rows are whole 256-value blocks";
  const uint8_t* b = static_cast<const uint8_t*>(src);
  const int64_t bytes = KQuantBlockBytes(t);
  for (int64_t i = 0; i < n / kKQuantBlockValues; ++i, b += bytes, dst += kK) {
    switch (t) {
      case KQuantType::kQ2_K:
        DequantQ2_K(b, dst);
        break;
      case KQuantType::kQ3_K:
        DequantQ3_K(b, dst);
        break;
      case KQuantType::kQ4_K:
        DequantQ45_K(b, /*five=*/false, dst);
        break;
      case KQuantType::kQ5_K:
        DequantQ45_K(b, /*five=*/true, dst);
        break;
      case KQuantType::kQ6_K:
        DequantQ6_K(b, dst);
        break;
    }
  }
}

}  // namespace tpserve
