// Portable C++ GEMM tile kernels (the fallback and the bit-level model the
// AVX2 kernels follow). See gemm_kernels.h for the arithmetic.
#include <cmath>
#include <cstring>

#include "kernels/cpu/gemm_kernels.h"

namespace tpserve::kernels::cpu::portable {
namespace {

// Integer dot of 32 int8 activations with 32 weights given as bytes; the
// loops are shaped so that -O3 vectorises them for any target (SSE2, NEON).
inline int32_t Dot32(const int8_t* w, const int8_t* x) {
  int32_t s = 0;
  for (int j = 0; j < 32; ++j) s += int32_t{w[j]} * int32_t{x[j]};
  return s;
}

// The 32 nibbles of a Q4 block in value order (low nibbles first).
inline void Unpack(const uint8_t* qs, int8_t* out) {
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<int8_t>(qs[j] & 0xF);
    out[j + 16] = static_cast<int8_t>(qs[j] >> 4);
  }
}

// Dot of one weight row (quantized) with one quantized activation row.
float DotQ8_0(const uint8_t* w, const ActBlock* x, int nb) {
  const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(w);
  float acc = 0.0f;
  for (int i = 0; i < nb; ++i) {
    const int32_t s = Dot32(b[i].qs, x[i].qs);
    acc += F16ToF32(b[i].d) * x[i].d * static_cast<float>(s);
  }
  return acc;
}

float DotQ4_0(const uint8_t* w, const ActBlock* x, int nb) {
  const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(w);
  float acc = 0.0f;
  int8_t q[32];
  for (int i = 0; i < nb; ++i) {
    Unpack(b[i].qs, q);
    const int32_t s = Dot32(q, x[i].qs);
    acc += F16ToF32(b[i].d) * (x[i].d * static_cast<float>(s) - 8.0f * x[i].sum);
  }
  return acc;
}

float DotQ4_1(const uint8_t* w, const ActBlock* x, int nb) {
  const BlockQ4_1* b = reinterpret_cast<const BlockQ4_1*>(w);
  float acc = 0.0f;
  int8_t q[32];
  for (int i = 0; i < nb; ++i) {
    Unpack(b[i].qs, q);
    const int32_t s = Dot32(q, x[i].qs);
    acc += F16ToF32(b[i].d) * x[i].d * static_cast<float>(s) + F16ToF32(b[i].m) * x[i].sum;
  }
  return acc;
}

// F32 / F16 / BF16 weights: convert and multiply-add in f32.
float DotFloat(DType t, const uint8_t* w, const float* x, int k) {
  float acc = 0.0f;
  for (int i = 0; i < k; ++i) {
    float wv;
    if (t == DType::kF32) {
      std::memcpy(&wv, w + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, w + 2 * i, 2);
      wv = t == DType::kF16 ? F16ToF32(h) : BF16ToF32(h);
    }
    acc += wv * x[i];
  }
  return acc;
}

}  // namespace

void QuantizeRow(const float* x, int k, ActBlock* out) {
  for (int b = 0; b < k / 32; ++b) {
    const float* v = x + 32 * b;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(v[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int32_t s = 0;
    for (int j = 0; j < 32; ++j) {
      const int q = static_cast<int>(std::nearbyint(v[j] * id));
      out[b].qs[j] = static_cast<int8_t>(q);
      s += q;
    }
    out[b].d = d;
    out[b].sum = d * static_cast<float>(s);
  }
}

void GemmTile(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  const int nb = a.k / 32;
  for (int64_t j = n_begin; j < n_end; ++j) {
    const uint8_t* w = a.w + j * a.row_bytes;
    const float bias = a.bias != nullptr ? a.bias[j] : 0.0f;
    for (int i = 0; i < a.m; ++i) {
      float v = 0.0f;
      switch (a.w_dtype) {
        case DType::kQ8_0:
          v = DotQ8_0(w, a.xq + int64_t{i} * nb, nb);
          break;
        case DType::kQ4_0:
          v = DotQ4_0(w, a.xq + int64_t{i} * nb, nb);
          break;
        case DType::kQ4_1:
          v = DotQ4_1(w, a.xq + int64_t{i} * nb, nb);
          break;
        default:
          v = DotFloat(a.w_dtype, w, a.x + i * a.x_stride, a.k);
          break;
      }
      a.y[i * a.y_stride + j] = v + bias;
    }
  }
}

}  // namespace tpserve::kernels::cpu::portable
