// AVX2 + FMA + F16C GEMM tile kernels, selected at runtime (isa.h). Same
// arithmetic as gemm_portable.cc; only the summation order of the f32 block
// terms differs.
//
// Tiles: an MR x NR block of outputs (MR activation rows, NR weight rows)
// keeps MR * NR f32 accumulators in registers, so each unpacked weight block
// is reused MR times and each activation block NR times. GEMV (m = 1) uses
// 1 x 4 so four weight streams are in flight; GEMM uses 4 x 2 (8
// accumulators + operands fit the 16 ymm registers).
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/gemm_kernels.h"

#if !defined(__x86_64__)
// Not x86: isa.cc never selects these; forward to the portable kernels.
namespace tpserve::kernels::cpu::avx2 {
void QuantizeRow(const float* x, int k, ActBlock* out) { portable::QuantizeRow(x, k, out); }
void GemmTile(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  portable::GemmTile(a, n_begin, n_end);
}
}  // namespace tpserve::kernels::cpu::avx2
#else

#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

namespace tpserve::kernels::cpu::avx2 {
namespace {

inline float Half(uint16_t h) { return _cvtsh_ss(h); }

inline uint16_t Load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline float HSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The 32 nibbles of a Q4 block as bytes in value order (low nibbles are
// values 0..15, high nibbles 16..31): the 16 bytes broadcast to both lanes,
// the high lane shifted right by 4, then masked (3 uops).
inline __m256i UnpackNibbles(const uint8_t* qs) {
  const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  const __m256i shifted = _mm256_srlv_epi64(b, _mm256_setr_epi64x(0, 0, 4, 4));
  return _mm256_and_si256(shifted, _mm256_set1_epi8(0xF));
}

// The first two f16 of a block (Q4_1: d, m; others: d, junk) as f32 lanes 0, 1.
inline __m128 BlockHeader(const uint8_t* wb) {
  int32_t bits;
  std::memcpy(&bits, wb, 4);
  return _mm_cvtph_ps(_mm_cvtsi32_si128(bits));
}

// Eight partial sums of u[i] * s[i] (u unsigned <= 128, s signed), as f32.
inline __m256 DotU8S8(__m256i u, __m256i s) {
  const __m256i p16 = _mm256_maddubs_epi16(u, s);  // |pair| <= 2*128*127: no saturation
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

// Same for two signed vectors: |a| * (b with a's sign).
inline __m256 DotS8S8(__m256i a, __m256i b) {
  return DotU8S8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

// Scale handling stays in vector registers: the weight block header [d_w, m_w]
// times the activation header [d_x, xsum] gives [d_w * d_x, m_w * xsum] in
// one multiply; lane 0 scales the integer dot, lane 1 accumulates the offset.
template <DType T, int MR, int NR>
void QuantTile(const GemmArgs& a, int64_t j0, int i0) {
  const int nb = a.k / 32;
  constexpr int64_t kBlockBytes = BlockBytes(T);
  constexpr int kQuantOffset = T == DType::kQ4_1 ? 4 : 2;
  __m256 acc[MR][NR];
  __m128 off[MR][NR];  // lane 1: Q4_0 sum d_w * xsum; Q4_1 sum m_w * xsum
  for (int ii = 0; ii < MR; ++ii) {
    for (int r = 0; r < NR; ++r) {
      acc[ii][r] = _mm256_setzero_ps();
      off[ii][r] = _mm_setzero_ps();
    }
  }
  const uint8_t* wrow[NR];
  for (int r = 0; r < NR; ++r) wrow[r] = a.w + (j0 + r) * a.row_bytes;
  const ActBlock* xrow[MR];
  for (int ii = 0; ii < MR; ++ii) xrow[ii] = a.xq + int64_t{i0 + ii} * nb;

  for (int b = 0; b < nb; ++b) {
    __m256i wv[NR];
    __m128 wh[NR];
    for (int r = 0; r < NR; ++r) {
      const uint8_t* wb = wrow[r] + b * kBlockBytes;
      wh[r] = BlockHeader(wb);
      // Q4_0 needs [d, d]; Q8_0 too, so that lane 1 never holds junk bits
      // (a denormal product there would cost a microcode assist on some CPUs).
      if constexpr (T != DType::kQ4_1) wh[r] = _mm_broadcastss_ps(wh[r]);
      if constexpr (T == DType::kQ8_0) {
        wv[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + 2));
      } else {
        wv[r] = UnpackNibbles(wb + kQuantOffset);
      }
    }
    for (int ii = 0; ii < MR; ++ii) {
      const ActBlock* xb = xrow[ii] + b;
      const __m128 xh = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(xb)));  // [d, sum]
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs));
      for (int r = 0; r < NR; ++r) {
        const __m256 p = T == DType::kQ8_0 ? DotS8S8(wv[r], xv) : DotU8S8(wv[r], xv);
        const __m128 t = _mm_mul_ps(wh[r], xh);
        acc[ii][r] = _mm256_fmadd_ps(_mm256_broadcastss_ps(t), p, acc[ii][r]);
        if constexpr (T != DType::kQ8_0) off[ii][r] = _mm_add_ps(off[ii][r], t);
      }
    }
  }
  for (int ii = 0; ii < MR; ++ii) {
    float* y = a.y + (i0 + ii) * a.y_stride + j0;
    for (int r = 0; r < NR; ++r) {
      float v = HSum(acc[ii][r]);
      const float o = _mm_cvtss_f32(_mm_movehdup_ps(off[ii][r]));  // lane 1
      if constexpr (T == DType::kQ4_0) v -= 8.0f * o;
      if constexpr (T == DType::kQ4_1) v += o;
      if (a.bias != nullptr) v += a.bias[j0 + r];
      y[r] = v;
    }
  }
}

template <DType T>
inline __m256 LoadW8(const uint8_t* p) {
  if constexpr (T == DType::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
  } else if constexpr (T == DType::kF16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
  }
}

template <DType T>
inline float LoadW1(const uint8_t* p) {
  if constexpr (T == DType::kF32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  } else if constexpr (T == DType::kF16) {
    return Half(Load16(p));
  } else {
    return BF16ToF32(Load16(p));
  }
}

template <DType T, int MR, int NR>
void FloatTile(const GemmArgs& a, int64_t j0, int i0) {
  constexpr int64_t kElem = BlockBytes(T);
  __m256 acc[MR][NR];
  for (int ii = 0; ii < MR; ++ii) {
    for (int r = 0; r < NR; ++r) acc[ii][r] = _mm256_setzero_ps();
  }
  const uint8_t* wrow[NR];
  for (int r = 0; r < NR; ++r) wrow[r] = a.w + (j0 + r) * a.row_bytes;
  const float* xrow[MR];
  for (int ii = 0; ii < MR; ++ii) xrow[ii] = a.x + (i0 + ii) * a.x_stride;
  const int k8 = a.k & ~7;
  for (int kk = 0; kk < k8; kk += 8) {
    __m256 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = LoadW8<T>(wrow[r] + kk * kElem);
    for (int ii = 0; ii < MR; ++ii) {
      const __m256 xv = _mm256_loadu_ps(xrow[ii] + kk);
      for (int r = 0; r < NR; ++r) acc[ii][r] = _mm256_fmadd_ps(xv, wv[r], acc[ii][r]);
    }
  }
  for (int ii = 0; ii < MR; ++ii) {
    float* y = a.y + (i0 + ii) * a.y_stride + j0;
    for (int r = 0; r < NR; ++r) {
      float v = HSum(acc[ii][r]);
      for (int kk = k8; kk < a.k; ++kk) v += LoadW1<T>(wrow[r] + kk * kElem) * xrow[ii][kk];
      if (a.bias != nullptr) v += a.bias[j0 + r];
      y[r] = v;
    }
  }
}

template <DType T, int MR, int NR>
inline void Tile(const GemmArgs& a, int64_t j0, int i0) {
  if constexpr (IsQuantized(T)) {
    QuantTile<T, MR, NR>(a, j0, i0);
  } else {
    FloatTile<T, MR, NR>(a, j0, i0);
  }
}

// NR weight rows starting at j0 against activation rows [i_begin, i_end).
template <DType T, int NR>
void RowGroup(const GemmArgs& a, int64_t j0, int i_begin, int i_end) {
  int i = i_begin;
  if constexpr (NR <= 2) {
    for (; i + 4 <= i_end; i += 4) Tile<T, 4, NR>(a, j0, i);
    switch (i_end - i) {
      case 3: Tile<T, 3, NR>(a, j0, i); break;
      case 2: Tile<T, 2, NR>(a, j0, i); break;
      case 1: Tile<T, 1, NR>(a, j0, i); break;
      default: break;
    }
  } else {
    for (; i < i_end; ++i) Tile<T, 1, NR>(a, j0, i);
  }
}

// Activation rows are taken in panels of ~256 KiB (quantized or f32), so a
// panel stays in L2 while every weight row of the chunk passes over it; each
// weight row pair stays in L1 across the panel.
template <DType T>
int PanelRows(const GemmArgs& a) {
  constexpr int64_t kPanelBytes = 256 << 10;
  const int64_t row_bytes = IsQuantized(T) ? int64_t{a.k} / 32 * sizeof(ActBlock) : int64_t{a.k} * 4;
  return static_cast<int>(std::max<int64_t>(4, kPanelBytes / row_bytes / 4 * 4));
}

template <DType T>
void GemmTileT(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.m == 1) {
    int64_t j = n_begin;
    for (; j + 4 <= n_end; j += 4) RowGroup<T, 4>(a, j, 0, 1);
    for (; j < n_end; ++j) RowGroup<T, 1>(a, j, 0, 1);
    return;
  }
  const int panel = PanelRows<T>(a);
  for (int i0 = 0; i0 < a.m; i0 += panel) {
    const int i1 = std::min(a.m, i0 + panel);
    int64_t j = n_begin;
    for (; j + 2 <= n_end; j += 2) RowGroup<T, 2>(a, j, i0, i1);
    for (; j < n_end; ++j) RowGroup<T, 1>(a, j, i0, i1);
  }
}

}  // namespace

void QuantizeRow(const float* x, int k, ActBlock* out) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int b = 0; b < k / 32; ++b) {
    const float* v = x + 32 * b;
    __m256 v0 = _mm256_loadu_ps(v);
    __m256 v1 = _mm256_loadu_ps(v + 8);
    __m256 v2 = _mm256_loadu_ps(v + 16);
    __m256 v3 = _mm256_loadu_ps(v + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, vid), kRound));
    const __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, vid), kRound));
    const __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, vid), kRound));
    const __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, vid), kRound));
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_hadd_epi32(s4, s4);
    s4 = _mm_hadd_epi32(s4, s4);
    const __m256i q = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3)), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].qs), q);
    out[b].d = d;
    out[b].sum = d * static_cast<float>(_mm_cvtsi128_si32(s4));
  }
}

void GemmTile(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  switch (a.w_dtype) {
    case DType::kF32: GemmTileT<DType::kF32>(a, n_begin, n_end); break;
    case DType::kF16: GemmTileT<DType::kF16>(a, n_begin, n_end); break;
    case DType::kBF16: GemmTileT<DType::kBF16>(a, n_begin, n_end); break;
    case DType::kQ8_0: GemmTileT<DType::kQ8_0>(a, n_begin, n_end); break;
    case DType::kQ4_0: GemmTileT<DType::kQ4_0>(a, n_begin, n_end); break;
    case DType::kQ4_1: GemmTileT<DType::kQ4_1>(a, n_begin, n_end); break;
  }
}

}  // namespace tpserve::kernels::cpu::avx2

#pragma GCC pop_options

#endif  // __x86_64__
