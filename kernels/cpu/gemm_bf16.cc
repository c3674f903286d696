// GEMM on BF16 weights with AVX-512 BF16 dot products (vdpbf16ps), chosen by
// gemm.cc from Isa::kAvxVnni up on CPUs with AVX-512 BF16 (isa.h
// HasAvx512Bf16) when k is a multiple of 32. gemm.cc rounds the activations
// to bf16 once per GEMM (RoundRowToBf16: nearest even, as dtype.h's
// F32ToBF16); each vdpbf16ps then multiplies 32 activations by 32 weights
// into 16 f32 lanes, 4x the products per instruction of the f32 FMA kernel.
//
// Arithmetic, the same for every m (batch invariance): output (i, j) keeps one
// 16-lane accumulator, updated over k in steps of 32, then y = its lanes
// summed through one fixed tree (Reduce4) + bias. GEMV (m = 1) takes 4 weight rows at a time;
// GEMM takes tiles of 4 activation rows x 4 weight rows (16 accumulators)
// over L2-sized panels of activation rows.
#include <algorithm>
#include <cstdint>

#include "kernels/cpu/gemm_kernels.h"

#if !defined(__x86_64__)
// Not x86: gemm.cc never selects these (HasAvx512Bf16 is false).
namespace tpserve::kernels::cpu::avx512bf16 {
void RoundRowToBf16(const float* x, int k, uint16_t* out) {
  for (int i = 0; i < k; ++i) out[i] = F32ToBF16(x[i]);
}
void GemmTile(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  portable::GemmTile(a, n_begin, n_end);
}
}  // namespace tpserve::kernels::cpu::avx512bf16
#else

#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16")
// As in gemm_amx.cc: GCC 12's AVX-512 intrinsics trip -Wmaybe-uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace tpserve::kernels::cpu::avx512bf16 {
namespace {

inline __m512bh LoadBf16x32(const uint16_t* p) {
  return __builtin_bit_cast(__m512bh, _mm512_loadu_si512(p));
}

// The 16 lanes of each of v[0..3] summed by one fixed tree (halves, then
// pairs, then quarters through hadd, then the two 128-bit lanes): lane r of
// the result is v[r]'s sum.
inline __m128 Reduce4(const __m512 (&v)[4]) {
  __m256 h[4];
  for (int r = 0; r < 4; ++r) {
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[r]), 1));
    h[r] = _mm256_add_ps(_mm512_castps512_ps256(v[r]), hi);
  }
  const __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
  return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

// Outputs of activation rows [i0, i0 + rows) x weight rows [j0, j0 + count);
// rows <= MR, count <= 4 (missing weight rows repeat the last one, missing
// activation rows read gemm.cc's zero padding; neither is stored).
template <int MR>
void Tile(const GemmArgs& a, int64_t j0, int count, int i0, int rows) {
  constexpr int NR = 4;
  __m512 acc[MR][NR];
  for (int ii = 0; ii < MR; ++ii) {
    for (int r = 0; r < NR; ++r) acc[ii][r] = _mm512_setzero_ps();
  }
  const uint16_t* w[NR];
  for (int r = 0; r < NR; ++r) {
    w[r] = reinterpret_cast<const uint16_t*>(a.w + (j0 + std::min(r, count - 1)) * a.row_bytes);
  }
  const uint16_t* x[MR];
  for (int ii = 0; ii < MR; ++ii) x[ii] = a.xb + int64_t{i0 + ii} * a.k;
  for (int kk = 0; kk < a.k; kk += 32) {
    if constexpr (MR == 1) {
      // GEMV streams NR rows at once: fetch each 1 KiB ahead.
      for (int r = 0; r < NR; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(w[r] + kk + 512), _MM_HINT_T0);
      }
    }
    __m512bh wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = LoadBf16x32(w[r] + kk);
    for (int ii = 0; ii < MR; ++ii) {
      const __m512bh xv = LoadBf16x32(x[ii] + kk);
      for (int r = 0; r < NR; ++r) acc[ii][r] = _mm512_dpbf16_ps(acc[ii][r], xv, wv[r]);
    }
  }
  const __mmask8 mask = static_cast<__mmask8>((1u << count) - 1);
  const __m128 bias = a.bias != nullptr ? _mm_maskz_loadu_ps(mask, a.bias + j0) : _mm_setzero_ps();
  for (int ii = 0; ii < rows; ++ii) {
    _mm_mask_storeu_ps(a.y + (i0 + ii) * a.y_stride + j0, mask,
                       _mm_add_ps(Reduce4(acc[ii]), bias));
  }
}

}  // namespace

void RoundRowToBf16(const float* x, int k, uint16_t* out) {
  // F32ToBF16 sixteen at a time: the top half of u + 0x7FFF + ((u >> 16) & 1);
  // NaN keeps its top half with the quiet bit set.
  const __m512i inf = _mm512_set1_epi32(0x7F800000);
  const __m512i quiet = _mm512_set1_epi32(0x40);
  int i = 0;
  for (; i + 16 <= k; i += 16) {
    const __m512i u = _mm512_loadu_si512(x + i);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
    const __mmask16 nan =
        _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)), inf);
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), quiet);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi32_epi16(r));
  }
  for (; i < k; ++i) out[i] = F32ToBF16(x[i]);
}

void GemmTile(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  auto count = [&](int64_t j) { return static_cast<int>(std::min<int64_t>(4, n_end - j)); };
  if (a.m == 1) {
    for (int64_t j = n_begin; j < n_end; j += 4) Tile<1>(a, j, count(j), 0, 1);
    return;
  }
  // Panels of ~256 KiB of bf16 activations stay in L2 while every weight row
  // of the chunk passes over them.
  constexpr int64_t kPanelBytes = 256 << 10;
  const int panel = static_cast<int>(std::max<int64_t>(4, kPanelBytes / (int64_t{2} * a.k) / 4 * 4));
  for (int p0 = 0; p0 < a.m; p0 += panel) {
    const int p1 = std::min(a.m, p0 + panel);
    for (int64_t j = n_begin; j < n_end; j += 4) {
      for (int i = p0; i < p1; i += 4) Tile<4>(a, j, count(j), i, std::min(4, p1 - i));
    }
  }
}

}  // namespace tpserve::kernels::cpu::avx512bf16

#pragma GCC diagnostic pop
#pragma GCC pop_options

#endif  // __x86_64__
