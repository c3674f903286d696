// AMX + AVX-512 GEMM tile kernels for quantized weights (Q8_0, Q4_0, Q4_1),
// selected at run time (isa.h, Isa::kAmx) on CPUs with AMX int8 tiles whose
// kernel granted this process the tile state (Sapphire Rapids and later).
// F32/F16/BF16 weights and the partition-invariant y_fixed output use the
// AVX-VNNI kernels.
//
// Arithmetic: gemm_packed_x86.inc (shared with the AVX-512 VNNI kernel, so
// both give the same bits). GEMM (m >= 2) computes the block dots on AMX
// tiles, 16 activation rows x 16 weight rows per tile pair, from the packed
// weights (PackGroup), and scales them with AVX-512, one lane per weight row;
// GEMV (m = 1) is the shared one. Weights are packed per 16-row group and
// reused across all m / 16 activation tiles.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/gemm_kernels.h"

#if !defined(__x86_64__)
// Not x86: isa.cc never selects these; forward to the portable kernels.
namespace tpserve::kernels::cpu::amx {
void GemmTile(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  portable::GemmTile(a, n_begin, n_end);
}
}  // namespace tpserve::kernels::cpu::amx
#else

#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,amx-tile,amx-int8")
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() (`__m512i __Y =
// __Y`), which -Wmaybe-uninitialized reports once inlined here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace tpserve::kernels::cpu::amx {
namespace {

#include "kernels/cpu/gemm_packed_x86.inc"

// Tile registers: C (16 x 16 int32), A (16 activation rows x 32 int8), B (8 x
// 64 bytes: 32 K values of 16 weight rows). Two sets, so that the tile unit
// works on block b + 1 while AVX-512 scales block b.
constexpr int kTileRows = 16;

struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row of each tile register
  uint8_t rows[16] = {};
};

TileConfig MakeTileConfig() {
  TileConfig c;
  for (int t : {0, 1}) c.colsb[t] = 64, c.rows[t] = 16;  // C
  for (int t : {2, 3}) c.colsb[t] = 32, c.rows[t] = 16;  // A
  for (int t : {4, 5}) c.colsb[t] = 64, c.rows[t] = 8;   // B
  return c;
}

// acc[ii] (16 weight rows) += block b's contribution to activation row ii.
template <DType T>
inline void ScaleBlock(__m512 (&acc)[kTileRows], const int32_t (&c)[kTileRows][16],
                       const PackedBlock& p, const ActBlock* x, int nb) {
  const __m512 dw = _mm512_load_ps(p.d);
  const __m512 off = _mm512_load_ps(p.off);
#pragma GCC unroll 16
  for (int ii = 0; ii < kTileRows; ++ii) {
    const ActBlock& xb = x[int64_t{ii} * nb];
    const __m512 isum = _mm512_cvtepi32_ps(_mm512_load_si512(c[ii]));
    acc[ii] = _mm512_fmadd_ps(isum, _mm512_mul_ps(dw, _mm512_set1_ps(xb.d)), acc[ii]);
    if constexpr (T != DType::kQ8_0)
      acc[ii] = _mm512_fmadd_ps(off, _mm512_set1_ps(xb.sum), acc[ii]);
  }
}

// y rows [i0, i0 + rows) x weight rows [j0, j0 + count) from acc.
inline void StoreRows(const GemmArgs& a, const __m512 (&acc)[kTileRows], int i0, int rows,
                      int64_t j0, int count) {
  // Fully unrolled: constant indices keep acc in registers (a loop to `rows`
  // forced the whole array to the stack: Q4_1 m = 512, 1 thread, 400 -> 500
  // GFLOP/s per CPU second). Overlapping the next blocks' tile products with
  // this scaling (two more accumulator tiles) measured no faster.
#pragma GCC unroll 16
  for (int ii = 0; ii < kTileRows; ++ii) {
    if (ii >= rows) break;
    StorePackedRow(a, acc[ii], i0 + ii, j0, count);
  }
}

// All m activation rows against one packed group of 16 weight rows.
template <DType T>
void GemmGroup(const GemmArgs& a, const PackedBlock* packed, int64_t j0, int count) {
  const int nb = a.k / 32;
  const int64_t x_stride = int64_t{nb} * static_cast<int64_t>(sizeof(ActBlock));
  alignas(64) int32_t c0[kTileRows][16];
  alignas(64) int32_t c1[kTileRows][16];
  for (int i0 = 0; i0 < a.m; i0 += kTileRows) {
    // a.xq holds whole tiles (gemm.cc pads it with zero rows).
    const ActBlock* x = a.xq + int64_t{i0} * nb;
    __m512 acc[kTileRows];
    for (__m512& v : acc) v = _mm512_setzero_ps();
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
      _tile_loadd(2, x[b].qs, x_stride);
      _tile_loadd(4, packed[b].b, 64);
      _tile_zero(0);
      _tile_loadd(3, x[b + 1].qs, x_stride);
      _tile_loadd(5, packed[b + 1].b, 64);
      _tile_zero(1);
      if constexpr (T == DType::kQ8_0) {
        _tile_dpbssd(0, 2, 4);
        _tile_dpbssd(1, 3, 5);
      } else {
        _tile_dpbsud(0, 2, 4);  // signed activations x unsigned nibbles
        _tile_dpbsud(1, 3, 5);
      }
      _tile_stored(0, c0, 64);
      _tile_stored(1, c1, 64);
      ScaleBlock<T>(acc, c0, packed[b], x + b, nb);
      ScaleBlock<T>(acc, c1, packed[b + 1], x + b + 1, nb);
    }
    if (b < nb) {
      _tile_loadd(2, x[b].qs, x_stride);
      _tile_loadd(4, packed[b].b, 64);
      _tile_zero(0);
      if constexpr (T == DType::kQ8_0) {
        _tile_dpbssd(0, 2, 4);
      } else {
        _tile_dpbsud(0, 2, 4);
      }
      _tile_stored(0, c0, 64);
      ScaleBlock<T>(acc, c0, packed[b], x + b, nb);
    }
    StoreRows(a, acc, i0, std::min(kTileRows, a.m - i0), j0, count);
  }
}

template <DType T>
void GemmTiles(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  thread_local std::vector<PackedBlock> packed;
  const int nb = a.k / 32;
  if (packed.size() < static_cast<size_t>(nb)) packed.resize(nb);
  static const TileConfig config = MakeTileConfig();
  // TILERELEASE below resets the configuration, so every call loads it.
  _tile_loadconfig(&config);
  for (int64_t j0 = n_begin; j0 < n_end; j0 += 16) {
    const int count = static_cast<int>(std::min<int64_t>(16, n_end - j0));
    PackGroup<T>(a, j0, count, packed.data());
    // The tile loads are asm the compiler cannot see read memory: keep the
    // packing stores before them.
    asm volatile("" ::: "memory");
    GemmGroup<T>(a, packed.data(), j0, count);
  }
  // Back to the init state: the kernel then skips the 8 KiB of tile data on
  // context switches.
  _tile_release();
}

template <DType T>
void GemmTileT(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.m == 1) {
    Gemv<T>(a, n_begin, n_end);
    return;
  }
  GemmTiles<T>(a, n_begin, n_end);
}

}  // namespace

void GemmTile(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  switch (a.w_dtype) {
    case DType::kQ8_0:
      GemmTileT<DType::kQ8_0>(a, n_begin, n_end);
      break;
    case DType::kQ4_0:
      GemmTileT<DType::kQ4_0>(a, n_begin, n_end);
      break;
    case DType::kQ4_1:
      GemmTileT<DType::kQ4_1>(a, n_begin, n_end);
      break;
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
      avxvnni::GemmTile(a, n_begin, n_end);
      break;
  }
}

}  // namespace tpserve::kernels::cpu::amx

#pragma GCC diagnostic pop
#pragma GCC pop_options

#endif  // __x86_64__
