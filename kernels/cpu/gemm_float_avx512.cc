// GEMM on F32/F16/BF16 weights with 16-lane f32 FMA (AVX-512F), chosen by
// gemm.cc from Isa::kAvxVnni up on CPUs with AVX-512 (isa.h HasAvx512).
// Weights are widened to f32 as loaded (BF16: zero-extend and shift; F16:
// vcvtph2ps), activations stay f32: the same products as the 8-lane AVX2
// kernel, summed in another order. (vdpbf16ps, which would take bf16
// activations, ran at a third of the FMA rate on the Xeon of docs/benchmarks.md
// "F32/F16/BF16 weights on AVX-512": 0.88 vs 3.79 G instructions/s.)
//
// Arithmetic, the same for every m (batch invariance): output (i, j) keeps one
// 16-lane accumulator over k in steps of 16 (the last step masked), then y =
// its lanes summed through one fixed tree (Reduce4) + bias. GEMV (m = 1)
// takes 4 weight rows at a time with software prefetch; GEMM takes tiles of 4
// activation rows x 4 weight rows (16 accumulators) over L2-sized panels of
// activation rows.
#include <algorithm>
#include <cstdint>

#include "kernels/cpu/gemm_kernels.h"

#if !defined(__x86_64__)
// Not x86: gemm.cc never selects these (HasAvx512 is false).
namespace tpserve::kernels::cpu::avx512 {
void GemmTileFloat(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  portable::GemmTile(a, n_begin, n_end);
}
}  // namespace tpserve::kernels::cpu::avx512
#else

#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")
// As in gemm_amx.cc: GCC 12's AVX-512 intrinsics trip -Wmaybe-uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace tpserve::kernels::cpu::avx512 {
namespace {

// Weights [kk, kk + 16) of row p as f32, lanes past `mask` zero.
template <DType T>
inline __m512 LoadW16(const uint8_t* p, int kk, __mmask16 mask) {
  if constexpr (T == DType::kF32) {
    return _mm512_maskz_loadu_ps(mask, reinterpret_cast<const float*>(p) + kk);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(mask, reinterpret_cast<const uint16_t*>(p) + kk);
    if constexpr (T == DType::kF16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// The 16 lanes of each of v[0..3] summed by one fixed tree (halves, then
// pairs and quarters through hadd, then the two 128-bit lanes): lane r of the
// result is v[r]'s sum.
inline __m128 Reduce4(const __m512 (&v)[4]) {
  __m256 h[4];
  for (int r = 0; r < 4; ++r) {
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[r]), 1));
    h[r] = _mm256_add_ps(_mm512_castps512_ps256(v[r]), hi);
  }
  const __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
  return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

// Outputs of activation rows [i0, i0 + MR) x weight rows [j0, j0 + count),
// count <= 4 (missing weight rows repeat the last one and are not stored).
template <DType T, int MR>
void Tile(const GemmArgs& a, int64_t j0, int count, int i0) {
  constexpr int NR = 4;
  constexpr int64_t kElem = BlockBytes(T);
  __m512 acc[MR][NR];
  for (int ii = 0; ii < MR; ++ii) {
    for (int r = 0; r < NR; ++r) acc[ii][r] = _mm512_setzero_ps();
  }
  const uint8_t* w[NR];
  for (int r = 0; r < NR; ++r) w[r] = a.w + (j0 + std::min(r, count - 1)) * a.row_bytes;
  const float* x[MR];
  for (int ii = 0; ii < MR; ++ii) x[ii] = a.x + (i0 + ii) * a.x_stride;
  for (int kk = 0; kk < a.k; kk += 16) {
    const __mmask16 mask =
        a.k - kk >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << (a.k - kk)) - 1);
    // Weight rows come from memory once per panel, and the 4 rows of a group
    // are contiguous: fetch 12 KiB ahead of the group, as fast as it is read
    // (the hardware prefetchers lose track of 4 interleaved rows).
    const uint8_t* p = w[0] + (int64_t{12} << 10) + int64_t{kk} * NR * kElem;
    for (int64_t off = 0; off < 16 * NR * kElem; off += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
    }
    __m512 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = LoadW16<T>(w[r], kk, mask);
    for (int ii = 0; ii < MR; ++ii) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x[ii] + kk);
      for (int r = 0; r < NR; ++r) acc[ii][r] = _mm512_fmadd_ps(xv, wv[r], acc[ii][r]);
    }
  }
  const __mmask8 store = static_cast<__mmask8>((1u << count) - 1);
  const __m128 bias = a.bias != nullptr ? _mm_maskz_loadu_ps(store, a.bias + j0) : _mm_setzero_ps();
  for (int ii = 0; ii < MR; ++ii) {
    _mm_mask_storeu_ps(a.y + (i0 + ii) * a.y_stride + j0, store,
                       _mm_add_ps(Reduce4(acc[ii]), bias));
  }
}

template <DType T>
void GemmTileT(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  auto count = [&](int64_t j) { return static_cast<int>(std::min<int64_t>(4, n_end - j)); };
  if (a.m == 1) {
    for (int64_t j = n_begin; j < n_end; j += 4) Tile<T, 1>(a, j, count(j), 0);
    return;
  }
  // Panels of ~256 KiB of activations stay in L2 while every weight row of
  // the chunk passes over them; each group of 4 weight rows stays in L1.
  constexpr int64_t kPanelBytes = 256 << 10;
  const int panel =
      static_cast<int>(std::max<int64_t>(4, kPanelBytes / (int64_t{4} * a.k) / 4 * 4));
  for (int p0 = 0; p0 < a.m; p0 += panel) {
    const int p1 = std::min(a.m, p0 + panel);
    for (int64_t j = n_begin; j < n_end; j += 4) {
      int i = p0;
      for (; i + 4 <= p1; i += 4) Tile<T, 4>(a, j, count(j), i);
      for (; i < p1; ++i) Tile<T, 1>(a, j, count(j), i);
    }
  }
}

}  // namespace

void GemmTileFloat(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  switch (a.w_dtype) {
    case DType::kF32:
      GemmTileT<DType::kF32>(a, n_begin, n_end);
      break;
    case DType::kF16:
      GemmTileT<DType::kF16>(a, n_begin, n_end);
      break;
    case DType::kBF16:
      GemmTileT<DType::kBF16>(a, n_begin, n_end);
      break;
    default:
      break;  // gemm.cc sends only F32/F16/BF16 here
  }
}

}  // namespace tpserve::kernels::cpu::avx512

#pragma GCC diagnostic pop
#pragma GCC pop_options

#endif  // __x86_64__
