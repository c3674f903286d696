// AVX-512 build of the attention bodies (attention_simd.inc: outer-product
// form, 16 keys per vector), chosen from kAvxVnni on CPUs with
// AVX-512F/BW/VL (isa.h HasAvx512).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/cpu/op_kernels.h"

#if !defined(__x86_64__)
// Not x86: attention.cc never selects these (HasAvx512 is false).
namespace tpserve::kernels::cpu::avx512 {
void Attend(const PagedAttentionParams& p, const AttentionItem& item) { portable::Attend(p, item); }
void AttendSegments(const PagedAttentionParams& p, const AttentionItem& item, float* partial) {
  portable::AttendSegments(p, item, partial);
}
void MergeSegments(const float* partial, int segments, int heads, int hd, float* out) {
  portable::MergeSegments(partial, segments, heads, hd, out);
}
}  // namespace tpserve::kernels::cpu::avx512
#else

#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")
// GCC 12's AVX-512 intrinsics trip -Wmaybe-uninitialized (as in gemm_amx.cc).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace tpserve::kernels::cpu::avx512 {
namespace {

// Lanes [0, n) of 16 (none for n <= 0, all from 16 up).
inline __mmask16 Mask16(int n) {
  if (n <= 0) return 0;
  return n >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << n) - 1);
}
inline __mmask32 Mask32(int n) {
  if (n <= 0) return 0;
  return n >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << n) - 1);
}

// The vector type of attention_simd.inc.
struct Vec {
  using R = __m512;
  static constexpr int kLanes = 16;
  static constexpr int kRegs = 32;
  static R Zero() { return _mm512_setzero_ps(); }
  static R Set1(float x) { return _mm512_set1_ps(x); }
  static R Load(const float* p) { return _mm512_load_ps(p); }
  static R LoadU(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, R v) { _mm512_store_ps(p, v); }
  static void StoreU(float* p, R v) { _mm512_storeu_ps(p, v); }
  static R Fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R Mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R Sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R Max(R a, R b) { return _mm512_max_ps(a, b); }
  static R Add(R a, R b) { return _mm512_add_ps(a, b); }
  static float ReduceMax(R v) { return _mm512_reduce_max_ps(v); }
  static float ReduceAdd(R v) { return _mm512_reduce_add_ps(v); }

  static R Min(R a, R b) { return _mm512_min_ps(a, b); }
  static R Fnma(R a, R b, R c) { return _mm512_fnmadd_ps(a, b, c); }
  // 2^n for integral n (as floats) in [-126, 127], built in the exponent bits.
  static R Pow2(R n) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }

  static R FirstLanes(R v, int n, float fill) {
    return _mm512_mask_blend_ps(Mask16(n), Set1(fill), v);
  }
  static R LoadRow(const float* p, int n) { return _mm512_maskz_loadu_ps(Mask16(n), p); }
  static R LoadRow(const uint16_t* p, int n) {
    return _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(Mask32(n), p));
  }
  static R LoadRowFull(const float* p) { return _mm512_loadu_ps(p); }
  static R LoadRowFull(const uint16_t* p) { return _mm512_castsi512_ps(_mm512_loadu_si512(p)); }
  static R Even(R w) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(w), 16)); }
  static R Odd(R w) {
    return _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(w), _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }

  static void Transpose(R (&r)[16]) {
    R t[16];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4i + k], 128-bit lane L: element 4L + k of rows 4i .. 4i + 3.
    R u[16];
    for (int i = 0; i < 4; ++i) {
      u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
      u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 4; ++k) {
      const R a = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88);  // 128-bit lanes 0, 2 of each
      const R b = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
      const R c = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xDD);  // lanes 1, 3
      const R d = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xDD);
      r[k] = _mm512_shuffle_f32x4(a, b, 0x88);
      r[8 + k] = _mm512_shuffle_f32x4(a, b, 0xDD);
      r[4 + k] = _mm512_shuffle_f32x4(c, d, 0x88);
      r[12 + k] = _mm512_shuffle_f32x4(c, d, 0xDD);
    }
  }

  static void Interleave(R even, R odd, float* dst, int n) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_mask_storeu_ps(dst, Mask16(n), _mm512_permutex2var_ps(even, lo, odd));
    _mm512_mask_storeu_ps(dst + 16, Mask16(n - 16), _mm512_permutex2var_ps(even, hi, odd));
  }
  static void StoreFirst(float* dst, R v, int n) { _mm512_mask_storeu_ps(dst, Mask16(n), v); }
};

}  // namespace

#include "kernels/cpu/attention_simd.inc"

}  // namespace tpserve::kernels::cpu::avx512

#pragma GCC diagnostic pop
#pragma GCC pop_options

#endif  // __x86_64__
