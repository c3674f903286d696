// GEMM on F32/F16/BF16 weights with 16-lane f32 FMA (AVX-512F), chosen by
// gemm.cc from Isa::kAvxVnni up on CPUs with AVX-512 (isa.h HasAvx512).
// Weights are widened to f32 (BF16: zero-extend and shift; F16: vcvtph2ps),
// activations stay f32: the same products as the 8-lane AVX2 kernel, summed
// in another order. (vdpbf16ps, which would take bf16 activations, has half
// the FMA's flop rate on this project's Xeons: 1.6 G instructions/s = 102
// GFLOP/s against 6.3 G vfmadd231ps/s = 200 GFLOP/s on one idle core,
// 2026-12-05.)
//
// Arithmetic, the same for every m (batch invariance): output (i, j) keeps one
// 16-lane accumulator over k in steps of 16 (the last step masked), then y =
// its lanes summed through one fixed tree (Reduce4) + bias. GEMV (m = 1)
// takes 4 weight rows at a time with software prefetch; up to m = 16, tiles of
// up to 6 activation rows x 4 weight rows convert the weights in registers;
// above, blocks of weight rows are widened into an f32 buffer once per panel
// of activation rows.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu/gemm_kernels.h"
#include "kernels/cpu/isa.h"

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

// Loads of 16 values: masked (lanes past `mask` zero) only where kTail, the
// last step of a row whose length is not a multiple of 16. A masked load
// costs an ALU uop besides the load: with them in every step the bf16 kernel
// ran at 93-96 GFLOP/s against 115-125 without (m = 512, 1 thread,
// 2026-12-06).
template <bool kTail>
inline __m512 LoadF16(const float* p, __mmask16 mask) {
  if constexpr (kTail) return _mm512_maskz_loadu_ps(mask, p);
  return _mm512_loadu_ps(p);
}

// Weights [kk, kk + 16) of row p as f32, lanes past `mask` zero where kTail.
template <DType T, bool kTail>
inline __m512 LoadW16(const uint8_t* p, int kk, __mmask16 mask) {
  if constexpr (T == DType::kF32) {
    return LoadF16<kTail>(reinterpret_cast<const float*>(p) + kk, mask);
  } else {
    const auto* q = reinterpret_cast<const uint16_t*>(p) + kk;
    const __m256i h = kTail ? _mm256_maskz_loadu_epi16(mask, q)
                            : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
    if constexpr (T == DType::kF16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// Lanes [0, left) of 16, all of them from left = 16 up.
inline __mmask16 TailMask(int left) {
  return left >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << left) - 1);
}

// v's 16 lanes as 8: lane i plus lane i + 8.
inline __m256 AddHalves(__m512 v) {
  const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  return _mm256_add_ps(_mm512_castps512_ps256(v), hi);
}

// The 16 lanes of each of v0..v3 summed by one fixed tree (halves, then
// pairs and quarters through hadd, then the two 128-bit lanes): lane r of the
// result is v<r>'s sum.
inline __m128 Reduce4(__m512 v0, __m512 v1, __m512 v2, __m512 v3) {
  const __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(AddHalves(v0), AddHalves(v1)),
                                  _mm256_hadd_ps(AddHalves(v2), AddHalves(v3)));
  return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

// Outputs of activation rows [i0, i0 + MR) x weight rows [j0, j0 + count),
// count <= 4, MR <= 6. load_w(kk, mask, tail, w0, w1, w2, w3) sets w<r> to
// weight row r's values [kk, kk + 16) as f32, lanes past `mask` zero in the
// tail step (tail: std::true_type there, std::false_type in the full steps;
// missing weight rows repeat the last one and are not stored).
//
// The 4 x MR accumulators are named variables, not an array: GCC 12 keeps an
// array of them in memory and stores every one on every k step, which held
// this kernel to ~30% of the FMA rate.
template <int MR, typename LoadW>
inline void TileCore(const GemmArgs& a, int64_t j0, int count, int i0, LoadW load_w) {
  static_assert(MR >= 1 && MR <= 6, "up to 6 activation rows per tile");
  const float* x[MR];
  for (int ii = 0; ii < MR; ++ii) x[ii] = a.x + (i0 + ii) * a.x_stride;
  const __m512 z = _mm512_setzero_ps();
#define TPSERVE_ACC(i) __m512 c##i##0 = z, c##i##1 = z, c##i##2 = z, c##i##3 = z
  TPSERVE_ACC(0);
  TPSERVE_ACC(1);
  TPSERVE_ACC(2);
  TPSERVE_ACC(3);
  TPSERVE_ACC(4);
  TPSERVE_ACC(5);
#undef TPSERVE_ACC
  auto step = [&](int kk, auto tail) {
    constexpr bool kTail = decltype(tail)::value;
    const __mmask16 mask = kTail ? TailMask(a.k - kk) : __mmask16{0xFFFF};
    __m512 w0, w1, w2, w3;
    load_w(kk, mask, tail, w0, w1, w2, w3);
#define TPSERVE_ROW(i)                                 \
  if constexpr (MR > i) {                              \
    const __m512 xv = LoadF16<kTail>(x[i] + kk, mask); \
    c##i##0 = _mm512_fmadd_ps(xv, w0, c##i##0);        \
    c##i##1 = _mm512_fmadd_ps(xv, w1, c##i##1);        \
    c##i##2 = _mm512_fmadd_ps(xv, w2, c##i##2);        \
    c##i##3 = _mm512_fmadd_ps(xv, w3, c##i##3);        \
  }
    TPSERVE_ROW(0) TPSERVE_ROW(1) TPSERVE_ROW(2) TPSERVE_ROW(3) TPSERVE_ROW(4) TPSERVE_ROW(5)
#undef TPSERVE_ROW
  };
  int kk = 0;
  for (; kk + 16 <= a.k; kk += 16) step(kk, std::false_type{});
  if (kk < a.k) step(kk, std::true_type{});
  const __mmask8 store = static_cast<__mmask8>((1u << count) - 1);
  const __m128 bias = a.bias != nullptr ? _mm_maskz_loadu_ps(store, a.bias + j0) : _mm_setzero_ps();
#define TPSERVE_OUT(i)                                                                 \
  if constexpr (MR > i) {                                                              \
    _mm_mask_storeu_ps(a.y + (i0 + i) * a.y_stride + j0, store,                        \
                       _mm_add_ps(Reduce4(c##i##0, c##i##1, c##i##2, c##i##3), bias)); \
  }
  TPSERVE_OUT(0) TPSERVE_OUT(1) TPSERVE_OUT(2) TPSERVE_OUT(3) TPSERVE_OUT(4) TPSERVE_OUT(5)
#undef TPSERVE_OUT
}

// Tiles on weight rows as stored (T: F32, F16 or BF16), converted per k step.
template <DType T, int MR>
void Tile(const GemmArgs& a, int64_t j0, int count, int i0) {
  constexpr int64_t kElem = BlockBytes(T);
  const uint8_t* w[4];
  for (int r = 0; r < 4; ++r) w[r] = a.w + (j0 + std::min(r, count - 1)) * a.row_bytes;
  TileCore<MR>(
      a, j0, count, i0,
      [&](int kk, __mmask16 mask, auto tail, __m512& w0, __m512& w1, __m512& w2, __m512& w3) {
        constexpr bool kTail = decltype(tail)::value;
        // Weight rows come from memory once per panel, and the 4 rows
        // of a group are contiguous: fetch 12 KiB ahead of the group,
        // as fast as it is read (the hardware prefetchers lose track
        // of 4 interleaved rows).
        const uint8_t* p = w[0] + (int64_t{12} << 10) + int64_t{kk} * 4 * kElem;
        for (int64_t off = 0; off < 16 * 4 * kElem; off += 64) {
          _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T0);
        }
        w0 = LoadW16<T, kTail>(w[0], kk, mask);
        w1 = LoadW16<T, kTail>(w[1], kk, mask);
        w2 = LoadW16<T, kTail>(w[2], kk, mask);
        w3 = LoadW16<T, kTail>(w[3], kk, mask);
      });
}

// Tiles on weight rows already in f32 (wf[r]: row r's k values).
template <int MR>
void TileWide(const GemmArgs& a, const float* const (&wf)[4], int64_t j0, int count, int i0) {
  TileCore<MR>(
      a, j0, count, i0,
      [&](int kk, __mmask16 mask, auto tail, __m512& w0, __m512& w1, __m512& w2, __m512& w3) {
        constexpr bool kTail = decltype(tail)::value;
        w0 = LoadF16<kTail>(wf[0] + kk, mask);
        w1 = LoadF16<kTail>(wf[1] + kk, mask);
        w2 = LoadF16<kTail>(wf[2] + kk, mask);
        w3 = LoadF16<kTail>(wf[3] + kk, mask);
      });
}

// Weight rows [j0, j0 + rows) widened to f32 at out, row stride `stride`.
template <DType T>
void WidenRows(const GemmArgs& a, int64_t j0, int rows, float* out, int64_t stride) {
  for (int r = 0; r < rows; ++r) {
    const uint8_t* p = a.w + (j0 + r) * a.row_bytes;
    float* o = out + r * stride;
    for (int kk = 0; kk < a.k; kk += 16) {
      const __mmask16 mask = TailMask(a.k - kk);
      // The block's rows are contiguous: fetch 8 KiB ahead.
      if (kk % 32 == 0)
        _mm_prefetch(reinterpret_cast<const char*>(p + (8 << 10) + 2 * kk), _MM_HINT_T0);
      _mm512_mask_storeu_ps(o + kk, mask, LoadW16<T, true>(p, kk, mask));
    }
  }
}

template <DType T>
void GemmTileT(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  auto count = [&](int64_t j) { return static_cast<int>(std::min<int64_t>(4, n_end - j)); };
  // Up to 16 rows (decode batches) each group of 4 weight rows is converted
  // in registers and stays in L1 for the row tiles: 71-76 GFLOP/s at m = 16
  // against 61-65 through the widened blocks below, equal at m = 32, slower
  // at 64 and above (kernels_bench, bf16, 1 thread, 2026-12-05).
  if (a.m <= 16) {
    for (int64_t j = n_begin; j < n_end; j += 4) {
      int i = 0;
      for (; i + 6 <= a.m; i += 6) Tile<T, 6>(a, j, count(j), i);
      if (i + 4 <= a.m) {
        Tile<T, 4>(a, j, count(j), i);
        i += 4;
      }
      if (i + 2 <= a.m) {
        Tile<T, 2>(a, j, count(j), i);
        i += 2;
      }
      if (i < a.m) Tile<T, 1>(a, j, count(j), i);
    }
    return;
  }
  // m > 16: blocks of kBlockRows weight rows are widened to f32 once per
  // panel of activation rows (F32 rows are used in place), so the FMA ports
  // do no conversions in the tiles; tiles of 6 activation rows x 4 weight
  // rows (24 accumulators). Panels of activations (sized below) stay in L2,
  // copied so that their rows, like the widened weight rows, start on 64-byte
  // lines (a 64-byte load across two lines costs two).
  constexpr int kBlockRows = 32;
  // Half the L2, between 256 KiB and 1 MiB: each panel re-widens every weight
  // row, and at 256 KiB a k = 1536 panel was 42 rows. With 1 MiB panels (this
  // Xeon's L2 is 2 MiB) bf16 m = 512 ran at 125-126 GFLOP/s against 115-116
  // (576 x 1536) and 130 against 113-125 (1536 x 576), 1 thread; the
  // 1024-token bf16 prompt on 2 threads moved within its noise (1.18-1.55 s
  // against 1.25-1.38 s, five alternations; kernels_bench, tpserve-run,
  // 2026-12-06).
  const int64_t panel_bytes = std::clamp<int64_t>(L2CacheBytes() / 2, 256 << 10, 1 << 20);
  const int panel =
      static_cast<int>(std::max<int64_t>(6, panel_bytes / (int64_t{4} * a.k) / 6 * 6));
  const int64_t stride = (a.k + 15) / 16 * 16;
  struct alignas(64) Line {
    float v[16];
  };
  thread_local std::vector<Line> wide, xs;
  if constexpr (T != DType::kF32) wide.resize(static_cast<size_t>(kBlockRows * stride / 16));
  xs.resize(static_cast<size_t>(std::min(panel, a.m) * stride / 16));
  for (int p0 = 0; p0 < a.m; p0 += panel) {
    const int rows_x = std::min(a.m - p0, panel);
    float* xp = reinterpret_cast<float*>(xs.data());
    for (int i = 0; i < rows_x; ++i) {
      std::copy_n(a.x + (p0 + i) * a.x_stride, a.k, xp + i * stride);
    }
    // The panel's rows 0.. are rows p0.. of x and y.
    GemmArgs ap = a;
    ap.x = xp;
    ap.x_stride = stride;
    ap.y = a.y + p0 * a.y_stride;
    const int p1 = rows_x;
    for (int64_t jb = n_begin; jb < n_end; jb += kBlockRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kBlockRows, n_end - jb));
      auto row = [&](int64_t j) {
        if constexpr (T == DType::kF32) {
          return reinterpret_cast<const float*>(a.w + j * a.row_bytes);
        } else {
          return reinterpret_cast<const float*>(wide.data()) + (j - jb) * stride;
        }
      };
      if constexpr (T != DType::kF32) {
        WidenRows<T>(a, jb, rows, reinterpret_cast<float*>(wide.data()), stride);
      }
      // One tile of activation rows (in L1) against every 4 rows of the block.
      auto tiles = [&](auto mr, int i) {
        for (int64_t j = jb; j < jb + rows; j += 4) {
          const int c = static_cast<int>(std::min<int64_t>(4, jb + rows - j));
          // Missing weight rows repeat the last one and are not stored.
          const float* const wf[4] = {row(j), row(j + std::min(1, c - 1)),
                                      row(j + std::min(2, c - 1)), row(j + std::min(3, c - 1))};
          TileWide<decltype(mr)::value>(ap, wf, j, c, i);
        }
      };
      int i = 0;
      for (; i + 6 <= p1; i += 6) tiles(std::integral_constant<int, 6>{}, i);
      if (i + 4 <= p1) {
        tiles(std::integral_constant<int, 4>{}, i);
        i += 4;
      }
      if (i + 2 <= p1) {
        tiles(std::integral_constant<int, 2>{}, i);
        i += 2;
      }
      if (i < p1) tiles(std::integral_constant<int, 1>{}, i);
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
