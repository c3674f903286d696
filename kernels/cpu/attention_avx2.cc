// AVX2 build of the attention bodies (attention_simd.inc: outer-product form,
// 8 keys per vector, 16 registers), chosen from kAvx2 on CPUs without
// AVX-512.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/cpu/op_kernels.h"

#if !defined(__x86_64__)
// Not x86: attention.cc never selects these (no AVX2).
namespace tpserve::kernels::cpu::avx2 {
void Attend(const PagedAttentionParams& p, const AttentionItem& item) { portable::Attend(p, item); }
void AttendSegments(const PagedAttentionParams& p, const AttentionItem& item, float* partial) {
  portable::AttendSegments(p, item, partial);
}
void MergeSegments(const float* partial, int segments, int heads, int hd, float* out) {
  portable::MergeSegments(partial, segments, heads, hd, out);
}
}  // namespace tpserve::kernels::cpu::avx2
#else

#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

namespace tpserve::kernels::cpu::avx2 {
namespace {

// All-ones in 32-bit lanes [0, n) of 8.
inline __m256i LaneMask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The vector type of attention_simd.inc.
struct Vec {
  using R = __m256;
  static constexpr int kLanes = 8;
  static constexpr int kRegs = 16;
  static R Zero() { return _mm256_setzero_ps(); }
  static R Set1(float x) { return _mm256_set1_ps(x); }
  static R Load(const float* p) { return _mm256_load_ps(p); }
  static R LoadU(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, R v) { _mm256_store_ps(p, v); }
  static void StoreU(float* p, R v) { _mm256_storeu_ps(p, v); }
  static R Fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R Mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R Sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R Max(R a, R b) { return _mm256_max_ps(a, b); }
  static R Add(R a, R b) { return _mm256_add_ps(a, b); }
  static float ReduceMax(R v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
  }
  // Lanes i + (i + 4), then (0 + 2) + (1 + 3).
  static float ReduceAdd(R v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
  }

  static R Min(R a, R b) { return _mm256_min_ps(a, b); }
  static R Fnma(R a, R b, R c) { return _mm256_fnmadd_ps(a, b, c); }
  // 2^n for integral n (as floats) in [-126, 127], built in the exponent bits.
  static R Pow2(R n) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }

  static R FirstLanes(R v, int n, float fill) {
    return _mm256_blendv_ps(Set1(fill), v, _mm256_castsi256_ps(LaneMask(n)));
  }
  static R LoadRow(const float* p, int n) {
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, LaneMask(n));
  }
  // 16 bf16 values as 8 pairs; past n from a zeroed copy (no 16-bit masked
  // loads in AVX2).
  static R LoadRow(const uint16_t* p, int n) {
    if (n >= 16) return LoadRowFull(p);
    alignas(32) uint16_t tail[16] = {};
    if (n > 0) std::memcpy(tail, p, sizeof(uint16_t) * n);
    return LoadRowFull(tail);
  }
  static R LoadRowFull(const float* p) { return _mm256_loadu_ps(p); }
  static R LoadRowFull(const uint16_t* p) {
    return _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static R Even(R w) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(w), 16)); }
  static R Odd(R w) {
    return _mm256_castsi256_ps(
        _mm256_and_si256(_mm256_castps_si256(w), _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }

  static void Transpose(R (&r)[8]) {
    R t[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4i + k], 128-bit lane L: element 4L + k of rows 4i .. 4i + 3.
    R u[8];
    for (int i = 0; i < 2; ++i) {
      u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
      u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 4; ++k) {
      r[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
      r[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
    }
  }

  static void Interleave(R even, R odd, float* dst, int n) {
    const R lo = _mm256_unpacklo_ps(even, odd);  // e0 o0 e1 o1 | e4 o4 e5 o5
    const R hi = _mm256_unpackhi_ps(even, odd);  // e2 o2 e3 o3 | e6 o6 e7 o7
    StoreFirst(dst, _mm256_permute2f128_ps(lo, hi, 0x20), n);
    StoreFirst(dst + 8, _mm256_permute2f128_ps(lo, hi, 0x31), n - 8);
  }
  static void StoreFirst(float* dst, R v, int n) {
    if (n >= 8) {
      _mm256_storeu_ps(dst, v);
    } else if (n > 0) {
      _mm256_maskstore_ps(dst, LaneMask(n), v);
    }
  }
};

}  // namespace

#include "kernels/cpu/attention_simd.inc"

}  // namespace tpserve::kernels::cpu::avx2

#pragma GCC pop_options

#endif  // __x86_64__
