#include "worker/model/quantize.h"

#include <cmath>
#include <cstring>

namespace tpserve {
namespace {

void QuantizeQ8_0(const float* x, BlockQ8_0* y) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(x[i]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = F32ToF16(d);
  for (int i = 0; i < 32; ++i) y->qs[i] = static_cast<int8_t>(std::roundf(x[i] * id));
}

void QuantizeQ4_0(const float* x, BlockQ4_0* y) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < 32; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = F32ToF16(d);
  uint8_t q[32];
  for (int i = 0; i < 32; ++i) {
    // Evaluated in double so the result does not depend on FMA contraction.
    const int v = static_cast<int>(static_cast<double>(x[i]) * static_cast<double>(id) + 8.5);
    q[i] = static_cast<uint8_t>(v < 0 ? 0 : (v > 15 ? 15 : v));
  }
  for (int i = 0; i < 16; ++i) y->qs[i] = static_cast<uint8_t>(q[i] | (q[i + 16] << 4));
}

void QuantizeQ4_1(const float* x, BlockQ4_1* y) {
  float min = x[0], max = x[0];
  for (int i = 1; i < 32; ++i) {
    min = std::fmin(min, x[i]);
    max = std::fmax(max, x[i]);
  }
  const float d = (max - min) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = F32ToF16(d);
  y->m = F32ToF16(min);
  uint8_t q[32];
  for (int i = 0; i < 32; ++i) {
    const float v = (x[i] - min) * id + 0.5f;
    const int t = static_cast<int>(v);
    q[i] = static_cast<uint8_t>(t < 0 ? 0 : (t > 15 ? 15 : t));
  }
  for (int i = 0; i < 16; ++i) y->qs[i] = static_cast<uint8_t>(q[i] | (q[i + 16] << 4));
}

}  // namespace

void QuantizeRow(DType t, const float* src, void* dst, int64_t n) {
  if (n <= 0) return;
  uint8_t* out = static_cast<uint8_t*>(dst);
  switch (t) {
    case DType::kF32:
      std::memcpy(out, src, static_cast<size_t>(n) * 4);
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = F32ToF16(src[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = F32ToBF16(src[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    case DType::kQ8_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        BlockQ8_0 blk;
        QuantizeQ8_0(src + 32 * b, &blk);
        std::memcpy(out + b * sizeof(blk), &blk, sizeof(blk));
      }
      return;
    case DType::kQ4_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        BlockQ4_0 blk;
        QuantizeQ4_0(src + 32 * b, &blk);
        std::memcpy(out + b * sizeof(blk), &blk, sizeof(blk));
      }
      return;
    case DType::kQ4_1:
      for (int64_t b = 0; b < n / 32; ++b) {
        BlockQ4_1 blk;
        QuantizeQ4_1(src + 32 * b, &blk);
        std::memcpy(out + b * sizeof(blk), &blk, sizeof(blk));
      }
      return;
  }
}

}  // namespace tpserve
