// AVX-512 build of the attention bodies (op_kernels.h), chosen from kAvxVnni
// on CPUs with AVX-512F/BW/VL (isa.h HasAvx512). Scores are computed in
// outer-product form: per work item and segment, the segment's K rows are
// transposed once into f32 columns (kt: column d holds element d of every
// key), so one FMA scores 16 keys against one query element and no score
// needs a horizontal sum. A prefill work item covers several query rows, so
// one transposition serves all of them (and the group's query heads).
//
// Arithmetic of one (query row, head, segment), whatever the item, the batch
// or the thread count (the batch invariance of op_kernels.h):
//   score_j = scale * (((q_0 k_j0) + q_1 k_j1) + ...)  one FMA per element, in
//                                                      element order
//   max, e_j = Exp16(score_j - max), sum = the 16-lane sums of the e vectors
//   in order, then _mm512_reduce_add_ps
//   o_d = ((e_0 v_0d) + e_1 v_1d) + ...                one FMA per key, in
//                                                      key order
// and segments merge as in MergeSegments below. Rows of an item are processed
// two at a time where the group has at most 3 heads (each loaded K column and
// V row then serves twice the FMAs); that changes which registers hold the
// sums, not their operations.
//
// bf16 V rows are widened 32 elements at a time as pairs: a 32-bit lane holds
// elements 2i and 2i + 1, so (lane << 16) is element 2i as f32 and (lane &
// 0xFFFF0000) element 2i + 1, one instruction per 16 values. The weighted
// sums are kept in that even / odd order and put back in element order once
// per segment.
#include <algorithm>
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

constexpr int kSeg = kAttentionSegment;
constexpr int kKeyVecs = kSeg / 16;  // 16-key vectors per segment
// Floats between columns of kt (one segment's keys).
constexpr int64_t kKtStride = kSeg;

struct alignas(64) Line {
  float v[16];
};

// Lanes [0, left) of 16 (none for left <= 0, all from 16 up).
inline __mmask16 Mask16(int left) {
  if (left <= 0) return 0;
  return left >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << left) - 1);
}
inline __mmask32 Mask32(int left) {
  if (left <= 0) return 0;
  return left >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << left) - 1);
}

// e^x, FastExp of ops_impl.inc on 16 lanes: x = n ln2 + r, e^r by its
// degree-7 Taylor polynomial, 2^n built in the exponent bits; inputs clamped
// to [-87, 88].
inline __m512 Exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
  const __m512 magic = _mm512_set1_ps(12582912.0f);  // 1.5 * 2^23: adding it rounds
  const __m512 n =
      _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), magic), magic);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723e-6f), r);
  __m512 poly = _mm512_set1_ps(1.0f / 5040.0f);
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f / 720.0f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f / 120.0f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f / 24.0f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f / 6.0f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(0.5f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f));
  poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f));
  const __m512i bits =
      _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(poly, _mm512_castsi512_ps(bits));
}

// r[i] lane j -> r[j] lane i, for 16 vectors of 16 32-bit lanes.
inline void Transpose16(__m512 (&r)[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4i + k], 128-bit lane L: element 4L + k of rows 4i .. 4i + 3.
  __m512 u[16];
  for (int i = 0; i < 4; ++i) {
    u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int k = 0; k < 4; ++k) {
    const __m512 a = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88);  // lanes 0, 2 of each
    const __m512 b = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
    const __m512 c = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xDD);  // lanes 1, 3
    const __m512 d = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xDD);
    r[k] = _mm512_shuffle_f32x4(a, b, 0x88);
    r[8 + k] = _mm512_shuffle_f32x4(a, b, 0xDD);
    r[4 + k] = _mm512_shuffle_f32x4(c, d, 0x88);
    r[12 + k] = _mm512_shuffle_f32x4(c, d, 0xDD);
  }
}

// One segment's keys [0, n) of one KV head: element offsets of their rows in
// the cache (the same for K and V).
struct SegmentRows {
  int64_t off[kSeg];
  int n;
};

// kt[d * kKtStride + j] = K element d of key j, for keys in whole 16-key
// vectors (zeros past n).
template <typename KvT>
void TransposeKeys(const KvT* k_cache, const SegmentRows& rows, int hd, float* kt) {
  constexpr int kPiece = sizeof(KvT) == 2 ? 32 : 16;  // elements per 512-bit load
  const int row_bytes = hd * static_cast<int>(sizeof(KvT));
  auto prefetch_rows = [&](int j0) {
    for (int j = j0; j < std::min(j0 + 16, rows.n); ++j) {
      const char* row = reinterpret_cast<const char*>(k_cache + rows.off[j]);
      for (int b = 0; b < row_bytes; b += 64) _mm_prefetch(row + b, _MM_HINT_T0);
    }
  };
  prefetch_rows(0);
  for (int j0 = 0; j0 < rows.n; j0 += 16) {
    // The rows are scattered (one KV head's part of each token's row): the
    // next 16 are fetched while these are transposed.
    prefetch_rows(j0 + 16);
    const int keys = std::min(16, rows.n - j0);
    for (int c = 0; c < hd; c += kPiece) {
      __m512 r[16];
      if (keys == 16 && hd - c >= kPiece) {
        for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(k_cache + rows.off[j0 + j] + c);
      } else {
        for (int j = 0; j < 16; ++j) {
          if (j >= keys) {
            r[j] = _mm512_setzero_ps();
          } else if constexpr (sizeof(KvT) == 2) {
            r[j] = _mm512_castsi512_ps(
                _mm512_maskz_loadu_epi16(Mask32(hd - c), k_cache + rows.off[j0 + j] + c));
          } else {
            r[j] = _mm512_maskz_loadu_ps(Mask16(hd - c), k_cache + rows.off[j0 + j] + c);
          }
        }
      }
      Transpose16(r);
      float* col = kt + int64_t{c} * kKtStride + j0;
      if constexpr (sizeof(KvT) == 2) {
        // r[i]: elements c + 2i (low half) and c + 2i + 1 (high half) of the 16 keys.
        const __m512i high = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
        for (int i = 0; i < 16 && c + 2 * i < hd; ++i) {
          const __m512i w = _mm512_castps_si512(r[i]);
          _mm512_store_ps(col + 2 * i * kKtStride, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
          if (c + 2 * i + 1 < hd) {
            _mm512_store_ps(col + (2 * i + 1) * kKtStride,
                            _mm512_castsi512_ps(_mm512_and_si512(w, high)));
          }
        }
      } else {
        for (int i = 0; i < 16 && c + i < hd; ++i) _mm512_store_ps(col + i * kKtStride, r[i]);
      }
    }
  }
}

// Scores of M query vectors (q[m]: hd floats) against NB 16-key vectors of
// kt: out[m][16 b + lane] = scale * sum_d q[m][d] kt[d][16 b + lane].
template <int M, int NB>
inline void ScoreTile(const float* const* q, const float* kt, int hd, float scale,
                      float* const* out) {
  __m512 acc[M][NB];
#pragma GCC unroll 8
  for (int m = 0; m < M; ++m) {
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) acc[m][b] = _mm512_setzero_ps();
  }
  for (int d = 0; d < hd; ++d) {
    const float* col = kt + d * kKtStride;
    __m512 k[NB];
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) k[b] = _mm512_load_ps(col + 16 * b);
#pragma GCC unroll 8
    for (int m = 0; m < M; ++m) {
      const __m512 qv = _mm512_set1_ps(q[m][d]);
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) acc[m][b] = _mm512_fmadd_ps(qv, k[b], acc[m][b]);
    }
  }
  const __m512 s = _mm512_set1_ps(scale);
#pragma GCC unroll 8
  for (int m = 0; m < M; ++m) {
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) _mm512_storeu_ps(out[m] + 16 * b, _mm512_mul_ps(acc[m][b], s));
  }
}

// Key vectors per ScoreTile for M query vectors: M x NB accumulators, NB K
// columns and a broadcast fit in the 32 registers.
constexpr int ScoreVecs(int m) { return m <= 2 ? 8 : m == 3 ? 6 : m == 4 ? 5 : 4; }

// ScoreTile over key vectors [0, nv).
template <int M>
void Scores(const float* const* q, const float* kt, int nv, int hd, float scale,
            float* const* out) {
  constexpr int kNb = ScoreVecs(M);
  float* o[M];
  for (int v = 0; v < nv;) {
    const int nb = std::min(kNb, nv - v);
    for (int m = 0; m < M; ++m) o[m] = out[m] + 16 * v;
    const float* ktv = kt + 16 * v;
    // NB as a template argument (1 .. kNb), so the accumulators are registers.
    [&]<int... I>(std::integer_sequence<int, I...>) {
      ((nb == I + 1 ? (ScoreTile<M, I + 1>(q, ktv, hd, scale, o), true) : false) || ...);
    }
    (std::make_integer_sequence<int, kNb>{});
    v += nb;
  }
}

// sc[0, n) -> e^(sc - max) (lanes past n of the last vector 0); returns max
// and sum through mx, sum.
inline void Softmax(float* sc, int n, float* mx, float* sum) {
  const int nv = (n + 15) / 16;
  __m512 m = _mm512_set1_ps(-__builtin_inff());
  for (int v = 0; v < nv; ++v) {
    m = _mm512_max_ps(m, _mm512_mask_loadu_ps(m, Mask16(n - 16 * v), sc + 16 * v));
  }
  const float mv = _mm512_reduce_max_ps(m);
  const __m512 mxv = _mm512_set1_ps(mv);
  __m512 s = _mm512_setzero_ps();
  for (int v = 0; v < nv; ++v) {
    const __m512 e = _mm512_maskz_mov_ps(Mask16(n - 16 * v),
                                         Exp16(_mm512_sub_ps(_mm512_loadu_ps(sc + 16 * v), mxv)));
    _mm512_storeu_ps(sc + 16 * v, e);
    s = _mm512_add_ps(s, e);
  }
  *mx = mv;
  *sum = _mm512_reduce_add_ps(s);
}

// 64 elements [c, c + 64) of a V row as 4 f32 vectors, lanes past hd zero:
// bf16 in the even / odd order of the file comment (elements c + 2i, c + 2i
// + 1, c + 32 + 2i, c + 32 + 2i + 1), f32 in element order. Masked loads only
// where kTail.
template <typename KvT, bool kTail>
inline void LoadV64(const KvT* row, int left, __m512 (&x)[4]) {
  if constexpr (sizeof(KvT) == 2) {
    const __m512i high = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
    for (int h = 0; h < 2; ++h) {
      const __m512i w = kTail ? _mm512_maskz_loadu_epi16(Mask32(left - 32 * h), row + 32 * h)
                              : _mm512_loadu_si512(row + 32 * h);
      x[2 * h] = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
      x[2 * h + 1] = _mm512_castsi512_ps(_mm512_and_si512(w, high));
    }
  } else {
    for (int h = 0; h < 4; ++h) {
      x[h] = kTail ? _mm512_maskz_loadu_ps(Mask16(left - 16 * h), row + 16 * h)
                   : _mm512_loadu_ps(row + 16 * h);
    }
  }
}

// o[m] += sum_{j in [j0, j1)} e[m][j] v_j for M weight rows e[m], V rows at
// v_cache + rows.off[j]; o[m] holds hd rounded up to 64 floats in LoadV64's
// order.
template <int M, typename KvT>
void WeightedSum(const float* const* e, const KvT* v_cache, const SegmentRows& rows, int j0, int j1,
                 int hd, float* const* o) {
  for (int c = 0; c < hd; c += 64) {
    __m512 acc[M][4];
#pragma GCC unroll 8
    for (int m = 0; m < M; ++m) {
#pragma GCC unroll 4
      for (int t = 0; t < 4; ++t) acc[m][t] = _mm512_load_ps(o[m] + c + 16 * t);
    }
    auto keys = [&](auto tail) {
      for (int j = j0; j < j1; ++j) {
        __m512 x[4];
        LoadV64<KvT, decltype(tail)::value>(v_cache + rows.off[j] + c, hd - c, x);
#pragma GCC unroll 8
        for (int m = 0; m < M; ++m) {
          const __m512 w = _mm512_set1_ps(e[m][j]);
#pragma GCC unroll 4
          for (int t = 0; t < 4; ++t) acc[m][t] = _mm512_fmadd_ps(w, x[t], acc[m][t]);
        }
      }
    };
    if (hd - c >= 64) {
      keys(std::false_type{});
    } else {
      keys(std::true_type{});
    }
#pragma GCC unroll 8
    for (int m = 0; m < M; ++m) {
#pragma GCC unroll 4
      for (int t = 0; t < 4; ++t) _mm512_store_ps(o[m] + c + 16 * t, acc[m][t]);
    }
  }
}

// dst[0, hd) = src (WeightedSum's order for KvT) in element order.
template <typename KvT>
void StoreInOrder(const float* src, int hd, float* dst) {
  if constexpr (sizeof(KvT) == 2) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (int c = 0; c < hd; c += 32) {
      const __m512 even = _mm512_load_ps(src + c), odd = _mm512_load_ps(src + c + 16);
      _mm512_mask_storeu_ps(dst + c, Mask16(hd - c), _mm512_permutex2var_ps(even, lo, odd));
      _mm512_mask_storeu_ps(dst + c + 16, Mask16(hd - c - 16),
                            _mm512_permutex2var_ps(even, hi, odd));
    }
  } else {
    std::memcpy(dst, src, sizeof(float) * hd);
  }
}

// Per-thread buffers of one segment.
struct Scratch {
  std::vector<Line> kt;      // hd columns of kSeg keys
  std::vector<Line> scores;  // 8 rows of kSeg
  std::vector<Line> sums;    // 8 weighted sums of hd rounded up to 64
  SegmentRows rows;
};

Scratch& ThreadScratch(int hd) {
  thread_local Scratch s;
  const size_t hd64 = static_cast<size_t>(hd + 63) / 64 * 64;
  if (s.kt.size() < hd * size_t{kKeyVecs}) s.kt.resize(hd * size_t{kKeyVecs});
  if (s.scores.size() < 8 * size_t{kKeyVecs}) s.scores.resize(8 * size_t{kKeyVecs});
  if (s.sums.size() < 8 * hd64 / 16) s.sums.resize(8 * hd64 / 16);
  return s;
}

// Query rows [r_begin, r_end) of `item` (row r at position n_ctx - 1 + r)
// against segment `seg`, heads [head_begin, head_end): partial results
// (AttendSegments' layout) of row r at partial + r * row_stride.
template <typename KvT>
void SegmentRowsOf(const PagedAttentionParams& p, const AttentionItem& item, int seg, int r_begin,
                   int r_end, float* partial, int64_t row_stride) {
  const int group = p.n_heads / p.n_kv_heads;
  const int kv_head = item.head_begin / group;
  const int heads = item.head_end - item.head_begin;
  const int hd = p.head_dim;
  const int bs = p.block_size;
  const int64_t q_stride = p.q_stride != 0 ? p.q_stride : int64_t{p.n_heads} * hd;
  const int64_t token_elems = int64_t{p.n_kv_heads} * hd;
  const int32_t* table = p.block_tables + int64_t{item.seq} * p.max_blocks_per_seq;
  const int p0 = seg * kSeg;
  // Keys of row r in this segment.
  auto keys_of = [&](int r) { return std::min(kSeg, item.n_ctx + r - p0); };

  Scratch& s = ThreadScratch(hd);
  s.rows.n = keys_of(r_end - 1);
  // One division per block, not per key.
  for (int j = 0; j < s.rows.n;) {
    const int pos = p0 + j;
    const int len = std::min(bs - pos % bs, s.rows.n - j);
    const int64_t first =
        (int64_t{table[pos / bs]} * bs + pos % bs) * token_elems + int64_t{kv_head} * hd;
    for (int t = 0; t < len; ++t) s.rows.off[j + t] = first + t * token_elems;
    j += len;
  }
  float* kt = s.kt[0].v;
  TransposeKeys(static_cast<const KvT*>(p.k_cache), s.rows, hd, kt);
  const KvT* v_cache = static_cast<const KvT*>(p.v_cache);
  const int hd64 = (hd + 63) / 64 * 64;

  // HG heads from h0 for NR rows from r.
  auto rows_heads = [&](auto nr_c, auto hg_c, int r, int h0) {
    constexpr int NR = decltype(nr_c)::value, HG = decltype(hg_c)::value, M = NR * HG;
    const float* q[M];
    float* sc[M];
    float* sums[M];
    int n[M];
    for (int i = 0; i < NR; ++i) {
      for (int h = 0; h < HG; ++h) {
        const int m = i * HG + h;
        q[m] = p.q + (item.row + r + i) * q_stride + int64_t{item.head_begin + h0 + h} * hd;
        sc[m] = s.scores[m * kKeyVecs].v;
        sums[m] = s.sums[m * hd64 / 16].v;
        n[m] = keys_of(r + i);
      }
    }
    Scores<M>(q, kt, (n[M - 1] + 15) / 16, hd, p.scale, sc);
    float mx[M], total[M];
    for (int m = 0; m < M; ++m) {
      Softmax(sc[m], n[m], &mx[m], &total[m]);
      std::memset(sums[m], 0, sizeof(float) * hd64);
    }
    // Keys all NR rows have, then the last row's one more (the diagonal).
    WeightedSum<M>(sc, v_cache, s.rows, 0, n[0], hd, sums);
    if (n[M - 1] > n[0]) {
      WeightedSum<HG>(sc + (NR - 1) * HG, v_cache, s.rows, n[0], n[M - 1], hd,
                      sums + (NR - 1) * HG);
    }
    for (int i = 0; i < NR; ++i) {
      for (int h = 0; h < HG; ++h) {
        const int m = i * HG + h;
        float* out = partial + (r + i) * row_stride + int64_t{h0 + h} * (hd + 2);
        StoreInOrder<KvT>(sums[m], hd, out);
        out[hd] = mx[m];
        out[hd + 1] = total[m];
      }
    }
  };
  auto head_groups = [&](auto nr_c, int r) {
    for (int h0 = 0; h0 < heads; h0 += 4) {
      switch (std::min(4, heads - h0)) {
        case 4:
          rows_heads(nr_c, std::integral_constant<int, 4>{}, r, h0);
          break;
        case 3:
          rows_heads(nr_c, std::integral_constant<int, 3>{}, r, h0);
          break;
        case 2:
          rows_heads(nr_c, std::integral_constant<int, 2>{}, r, h0);
          break;
        default:
          rows_heads(nr_c, std::integral_constant<int, 1>{}, r, h0);
          break;
      }
    }
  };
  int r = r_begin;
  if (heads <= 3) {
    for (; r + 2 <= r_end; r += 2) head_groups(std::integral_constant<int, 2>{}, r);
  }
  for (; r < r_end; ++r) head_groups(std::integral_constant<int, 1>{}, r);
}

template <typename KvT>
void AttendRows(const PagedAttentionParams& p, const AttentionItem& item, int seg_begin,
                int seg_end, int r_begin, int r_end, float* partial, int64_t row_stride) {
  const int heads = item.head_end - item.head_begin;
  for (int seg = seg_begin; seg < seg_end; ++seg) {
    // Rows that reach into this segment.
    const int first = std::max(r_begin, seg * kSeg - item.n_ctx + 1);
    float* seg_partial = partial + int64_t{seg - seg_begin} * heads * (p.head_dim + 2);
    SegmentRowsOf<KvT>(p, item, seg, first, r_end, seg_partial, row_stride);
  }
}

}  // namespace

void AttendSegments(const PagedAttentionParams& p, const AttentionItem& item, float* partial) {
  if (p.kv_dtype == DType::kBF16) {
    AttendRows<uint16_t>(p, item, item.seg_begin, item.seg_end, 0, 1, partial, 0);
  } else {
    AttendRows<float>(p, item, item.seg_begin, item.seg_end, 0, 1, partial, 0);
  }
}

void MergeSegments(const float* partial, int segments, int heads, int hd, float* out) {
  const int64_t stride = int64_t{heads} * (hd + 2);
  for (int h = 0; h < heads; ++h) {
    const float* first = partial + int64_t{h} * (hd + 2);
    float mx = first[hd];
    for (int s = 1; s < segments; ++s) mx = std::max(mx, first[s * stride + hd]);
    float* o = out + int64_t{h} * hd;
    // Segment weights e^(max_s - max), and their sum over segments in order.
    float total = 0.0f;
    for (int c = 0; c < hd; c += 16) {
      const __mmask16 mask = Mask16(hd - c);
      __m512 acc = _mm512_setzero_ps();
      for (int s = 0; s < segments; ++s) {
        const float* src = first + s * stride;
        const float w = _mm512_cvtss_f32(Exp16(_mm512_set1_ps(src[hd] - mx)));
        if (c == 0) total += w * src[hd + 1];
        acc = _mm512_fmadd_ps(_mm512_set1_ps(w), _mm512_maskz_loadu_ps(mask, src + c), acc);
      }
      _mm512_mask_storeu_ps(o + c, mask, acc);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / total);
    for (int c = 0; c < hd; c += 16) {
      const __mmask16 mask = Mask16(hd - c);
      _mm512_mask_storeu_ps(o + c, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, o + c), inv));
    }
  }
}

void Attend(const PagedAttentionParams& p, const AttentionItem& item) {
  if (item.partial != nullptr) {
    AttendSegments(p, item, item.partial);
    return;
  }
  // Every segment of rows [0, item.rows), then each row's merge.
  const int heads = item.head_end - item.head_begin;
  const int hd = p.head_dim;
  const int segments = (item.n_ctx + item.rows - 1 + kSeg - 1) / kSeg;
  const int64_t row_stride = int64_t{segments} * heads * (hd + 2);
  thread_local std::vector<float> parts;
  if (parts.size() < static_cast<size_t>(row_stride * item.rows)) {
    parts.resize(static_cast<size_t>(row_stride * item.rows));
  }
  if (p.kv_dtype == DType::kBF16) {
    AttendRows<uint16_t>(p, item, 0, segments, 0, item.rows, parts.data(), row_stride);
  } else {
    AttendRows<float>(p, item, 0, segments, 0, item.rows, parts.data(), row_stride);
  }
  for (int r = 0; r < item.rows; ++r) {
    const int row_segments = (item.n_ctx + r + kSeg - 1) / kSeg;
    MergeSegments(parts.data() + r * row_stride, row_segments, heads, hd,
                  p.out + (item.row + r) * int64_t{p.n_heads} * hd + int64_t{item.head_begin} * hd);
  }
}

}  // namespace tpserve::kernels::cpu::avx512

#pragma GCC diagnostic pop
#pragma GCC pop_options

#endif  // __x86_64__
