// GEMM on Q4_0 / Q4_1 / Q8_0 weights for m >= 2 with 512-bit vpdpbusd
// (AVX-512 VNNI), chosen by gemm.cc at Isa::kAvxVnni on CPUs that have it
// (isa.h HasAvx512Vnni); GEMV (m = 1) and the last n % 4 weight rows go to
// the AVX-VNNI kernel (gemm_x86_impl.inc).
//
// Same arithmetic as that kernel's QuantTile / Gemv4, lane for lane: a zmm
// holds two of its ymm operands side by side (two weight rows' blocks, or
// the activation block twice), so every 256-bit half computes exactly the
// integers, products and f32 sums the AVX-VNNI kernel computes for one weight
// row, and the same final horizontal sums give the same bits (batch
// invariance: a row's output does not depend on m or on which kernel ran).
// What changes is the instruction count per block and activation row: one
// vpdpbusd, convert, scale permute and FMA for two weight rows instead of
// two of each.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/gemm_kernels.h"

#if !defined(__x86_64__)
// Not x86: gemm.cc never selects this (HasAvx512Vnni is false).
namespace tpserve::kernels::cpu::avx512 {
void GemmTileQuant(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  portable::GemmTile(a, n_begin, n_end);
}
}  // namespace tpserve::kernels::cpu::avx512
#else

#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
// As in gemm_amx.cc: GCC 12's AVX-512 intrinsics trip -Wmaybe-uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace tpserve::kernels::cpu::avx512 {
namespace {

#include "kernels/cpu/gemm_x86_sums.inc"

// Block b's quants of two weight rows, unsigned for vpdpbusd where Q4: per
// row the 256 bits gemm_x86_impl.inc's UnpackNibbles gives (its 16 bytes in
// both 128-bit lanes, masked to the low nibbles, then to the high ones).
template <DType T>
inline __m512i PairQuants(const uint8_t* w0, const uint8_t* w1) {
  if constexpr (T == DType::kQ8_0) {
    const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + 2));
    const __m256i q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1 + 2));
    return _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
  } else {
    constexpr int kOffset = T == DType::kQ4_1 ? 4 : 2;
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + kOffset));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w1 + kOffset));
    const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
    const __m512i b = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3),
                                               _mm512_castsi256_si512(q));
    constexpr int64_t kLo = 0x0F0F0F0F0F0F0F0F;
    constexpr int64_t kHi = static_cast<int64_t>(0xF0F0F0F0F0F0F0F0);
    return _mm512_and_si512(b, _mm512_setr_epi64(kLo, kLo, kHi, kHi, kLo, kLo, kHi, kHi));
  }
}

// Per lane the sum of 4 products weight x activation, as f32. Q8_0 weights
// are signed: |w| times x with w's sign gives the integers of
// gemm_x86_impl.inc's DotS8S8 (where w = 0 the product is 0 either way).
template <DType T>
inline __m512 Dot(__m512i w, __m512i x) {
  if constexpr (T == DType::kQ8_0) {
    const __m512i s = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    w = _mm512_abs_epi8(w);
    x = s;
  }
  return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w, x));
}

// Outputs (i, j0 .. j0 + 3) from Tile's accumulators: weight rows 0, 1 in
// c01's halves, 2, 3 in c23's, their offset sums in lanes 1, 3, 5, 7 of o.
template <DType T>
inline void StoreRow(const GemmArgs& a, int64_t j0, int i, __m512 c01, __m512 c23, __m256 o) {
  alignas(32) float off[8];
  _mm256_store_ps(off, o);
  const __m256 acc[4] = {_mm512_castps512_ps256(c01),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c01), 1)),
                         _mm512_castps512_ps256(c23),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c23), 1))};
  float* y = a.y + i * a.y_stride + j0;
  for (int r = 0; r < 4; ++r) {
    float v = T == DType::kQ8_0 ? HSum(acc[r]) : HSumHighNibblesScaled(acc[r]);
    if constexpr (T == DType::kQ4_0) v -= 8.0f * off[2 * r + 1];
    if constexpr (T == DType::kQ4_1) v += off[2 * r + 1];
    if (a.bias != nullptr) v += a.bias[j0 + r];
    y[r] = v;
  }
}

// Outputs of activation rows [i0, i0 + MR) x weight rows [j0, j0 + 4).
//
// Per block: the 4 rows' headers [d m] (Q4_0, Q8_0: [d d]) as one f32 vector
// times the activation header [d_x xsum] gives, in lanes 2r and 2r + 1, row
// r's dot scale and offset term (QuantTile's products); c<i><p> holds rows 2p
// (low half) and 2p + 1 (high half), o<i> the offset sums. Named variables,
// not arrays: GCC 12 keeps an array of accumulators in memory and stores it
// on every step.
template <DType T, int MR>
void Tile(const GemmArgs& a, int64_t j0, int i0) {
  static_assert(MR >= 1 && MR <= 4, "up to 4 activation rows per tile");
  const int nb = a.k / 32;
  constexpr int64_t kBlockBytes = BlockBytes(T);
  const uint8_t* w0 = a.w + j0 * a.row_bytes;
  const int64_t rb = a.row_bytes;
  const ActBlock* x[MR];
  for (int ii = 0; ii < MR; ++ii) x[ii] = a.xq + int64_t{i0 + ii} * nb;
  const __m512i scale0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
  const __m512i scale1 = _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6);
  const __m512 z = _mm512_setzero_ps();
  const __m256 z8 = _mm256_setzero_ps();
  __m512 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z;
  __m256 o0 = z8, o1 = z8, o2 = z8, o3 = z8;
  for (int b = 0; b < nb; ++b) {
    const uint8_t* wb = w0 + b * kBlockBytes;
    const __m512i q01 = PairQuants<T>(wb, wb + rb);
    const __m512i q23 = PairQuants<T>(wb + 2 * rb, wb + 3 * rb);
    int32_t h[4];
    for (int r = 0; r < 4; ++r) std::memcpy(&h[r], wb + r * rb, 4);
    __m256 wh = _mm256_cvtph_ps(_mm_setr_epi32(h[0], h[1], h[2], h[3]));
    if constexpr (T != DType::kQ4_1) wh = _mm256_moveldup_ps(wh);
#define TPS_ROW(i)                                                                            \
  if constexpr (MR > i) {                                                                     \
    const ActBlock* xb = x[i] + b;                                                            \
    const __m256 t = _mm256_mul_ps(                                                           \
        wh, _mm256_castpd_ps(_mm256_broadcast_sd(reinterpret_cast<const double*>(xb))));      \
    if constexpr (T != DType::kQ8_0) o##i = _mm256_add_ps(o##i, t);                           \
    const __m512i xv =                                                                        \
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs))); \
    const __m512 t16 = _mm512_castps256_ps512(t);                                             \
    c##i##0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(scale0, t16), Dot<T>(q01, xv), c##i##0);  \
    c##i##1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(scale1, t16), Dot<T>(q23, xv), c##i##1);  \
  }
    TPS_ROW(0) TPS_ROW(1) TPS_ROW(2) TPS_ROW(3)
#undef TPS_ROW
  }
  if constexpr (MR > 0) StoreRow<T>(a, j0, i0 + 0, c00, c01, o0);
  if constexpr (MR > 1) StoreRow<T>(a, j0, i0 + 1, c10, c11, o1);
  if constexpr (MR > 2) StoreRow<T>(a, j0, i0 + 2, c20, c21, o2);
  if constexpr (MR > 3) StoreRow<T>(a, j0, i0 + 3, c30, c31, o3);
}

template <DType T>
void GemmTileT(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  // Panels of ~256 KiB of quantized activations stay in L2 while the chunk's
  // weight rows pass over them; each group of 4 weight rows stays in L1.
  constexpr int64_t kPanelBytes = 256 << 10;
  const int64_t row_bytes = int64_t{a.k} / 32 * static_cast<int64_t>(sizeof(ActBlock));
  const int panel = static_cast<int>(std::max<int64_t>(4, kPanelBytes / row_bytes / 4 * 4));
  const int64_t n4 = n_begin + (n_end - n_begin) / 4 * 4;
  for (int p0 = 0; p0 < a.m; p0 += panel) {
    const int p1 = std::min(a.m, p0 + panel);
    for (int64_t j = n_begin; j < n4; j += 4) {
      int i = p0;
      for (; i + 4 <= p1; i += 4) Tile<T, 4>(a, j, i);
      switch (p1 - i) {
        case 3:
          Tile<T, 3>(a, j, i);
          break;
        case 2:
          Tile<T, 2>(a, j, i);
          break;
        case 1:
          Tile<T, 1>(a, j, i);
          break;
        default:
          break;
      }
    }
  }
  if (n4 < n_end) avxvnni::GemmTile(a, n4, n_end);
}

}  // namespace

void GemmTileQuant(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.m < 2) {
    avxvnni::GemmTile(a, n_begin, n_end);
    return;
  }
  switch (a.w_dtype) {
    case DType::kQ4_0:
      GemmTileT<DType::kQ4_0>(a, n_begin, n_end);
      break;
    case DType::kQ4_1:
      GemmTileT<DType::kQ4_1>(a, n_begin, n_end);
      break;
    case DType::kQ8_0:
      GemmTileT<DType::kQ8_0>(a, n_begin, n_end);
      break;
    default:
      avxvnni::GemmTile(a, n_begin, n_end);
      break;
  }
}

}  // namespace tpserve::kernels::cpu::avx512

#pragma GCC diagnostic pop
#pragma GCC pop_options

#endif  // __x86_64__
