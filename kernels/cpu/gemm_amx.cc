// AMX + AVX-512 GEMM tile kernels for quantized weights (Q8_0, Q4_0, Q4_1),
// selected at run time (isa.h, Isa::kAmx) on CPUs with AMX int8 tiles whose
// kernel granted this process the tile state (Sapphire Rapids and later).
// F32/F16/BF16 weights and the partition-invariant y_fixed output use the
// AVX-VNNI kernels.
//
// Arithmetic (one rounding sequence for every m, so a row's output does not
// depend on the batch): for output (i, j), over the 32-value blocks b in order,
//   acc = fma(float(isum_ijb), d_wjb * d_xib, acc)       isum exact in int32
//   acc = fma(off_jb, xsum_ib, acc)                       Q4_1: off = m_w;
//                                                         Q4_0: off = -8 d_w
// then y = acc + bias. GEMM (m >= 2) computes isum on AMX tiles, 16 activation
// rows x 16 weight rows per tile pair, and scales with AVX-512 (one lane per
// weight row); GEMV (m = 1) computes it with vpdpbusd on 8 weight rows at once
// (one lane per weight row again), so both give the same bits.
//
// Tile data layout of one block for 16 weight rows (PackedBlock): AMX's B
// operand holds K in groups of 4 bytes per column ("VNNI layout"): row r,
// column j, byte q = w_j[4r + q]. Weights are packed per 16-row group and
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
#pragma GCC target("avx2,fma,f16c,avxvnni,avx512f,avx512bw,avx512vl,avx512dq,amx-tile,amx-int8")
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() (`__m512i __Y =
// __Y`), which -Wmaybe-uninitialized reports once inlined here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace tpserve::kernels::cpu::amx {
namespace {

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

// One quantization block of 16 weight rows, as the tiles and the scaling
// step read it.
struct alignas(64) PackedBlock {
  uint8_t b[8][64];  // B tile, VNNI layout (Q4: unsigned nibbles, Q8_0: int8)
  float d[16];       // d_w
  float off[16];     // Q4_1: m_w, Q4_0: -8 d_w, Q8_0: unused
};
static_assert(sizeof(PackedBlock) == 640, "PackedBlock is 10 cache lines");

// Byte offsets of up to 16 consecutive weight rows; rows past `count` repeat
// the last one (their results are never stored).
__m512i RowOffsets(int64_t row_bytes, int count) {
  alignas(64) int32_t o[16];
  for (int r = 0; r < 16; ++r) o[r] = static_cast<int32_t>(std::min(r, count - 1) * row_bytes);
  return _mm512_load_si512(o);
}

// The two f16 of each gathered header dword as f32: low (d) and high (m).
inline __m512 LowHalfToF32(__m512i h) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h)); }
inline __m512 HighHalfToF32(__m512i h) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(h, 16)));
}

template <DType T>
void PackGroup(const GemmArgs& a, int64_t j0, int count, PackedBlock* out) {
  constexpr int64_t kBlockBytes = BlockBytes(T);
  constexpr int kQuantOffset = T == DType::kQ4_1 ? 4 : 2;
  const int nb = a.k / 32;
  const __m512i rows = RowOffsets(a.row_bytes, count);
  const uint8_t* w0 = a.w + j0 * a.row_bytes;
  for (int b = 0; b < nb; ++b) {
    const uint8_t* base = w0 + b * kBlockBytes;
    PackedBlock& p = out[b];
    const __m512i hdr = _mm512_i32gather_epi32(rows, base, 1);
    const __m512 d = LowHalfToF32(hdr);
    _mm512_store_ps(p.d, d);
    if constexpr (T == DType::kQ4_1) _mm512_store_ps(p.off, HighHalfToF32(hdr));
    if constexpr (T == DType::kQ4_0) _mm512_store_ps(p.off, _mm512_mul_ps(d, _mm512_set1_ps(-8)));
    if constexpr (T == DType::kQ8_0) {
      for (int r = 0; r < 8; ++r) {
        _mm512_store_si512(p.b[r], _mm512_i32gather_epi32(rows, base + kQuantOffset + 4 * r, 1));
      }
    } else {
      // Values 4r..4r+3 are the low nibbles of bytes 4r..4r+3, values
      // 16+4r.. their high nibbles.
      const __m512i lo4 = _mm512_set1_epi8(0x0F);
      for (int r = 0; r < 4; ++r) {
        const __m512i g = _mm512_i32gather_epi32(rows, base + kQuantOffset + 4 * r, 1);
        _mm512_store_si512(p.b[r], _mm512_and_si512(g, lo4));
        _mm512_store_si512(p.b[r + 4], _mm512_and_si512(_mm512_srli_epi32(g, 4), lo4));
      }
    }
  }
  // The tile loads are asm the compiler cannot see read memory: keep the
  // packing stores before them.
  asm volatile("" ::: "memory");
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
  const __mmask16 mask = static_cast<__mmask16>((1u << count) - 1);
  const __m512 bias =
      a.bias != nullptr ? _mm512_maskz_loadu_ps(mask, a.bias + j0) : _mm512_setzero_ps();
  // Fully unrolled: constant indices keep acc in registers (a loop to `rows`
  // forced the whole array to the stack: Q4_1 m = 512, 1 thread, 400 -> 500
  // GFLOP/s per CPU second). Overlapping the next blocks' tile products with
  // this scaling (two more accumulator tiles) measured no faster.
#pragma GCC unroll 16
  for (int ii = 0; ii < kTileRows; ++ii) {
    if (ii >= rows) break;
    __m512 v = acc[ii];
    if (a.bias != nullptr) v = _mm512_add_ps(v, bias);
    _mm512_mask_storeu_ps(a.y + (i0 + ii) * a.y_stride + j0, mask, v);
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
    GemmGroup<T>(a, packed.data(), j0, count);
  }
  // Back to the init state: the kernel then skips the 8 KiB of tile data on
  // context switches.
  _tile_release();
}

// GEMV: 8 weight rows per step, one lane each; the 8 rows' vpdpbusd partial
// sums are reduced to one exact int32 per row with a tree of horizontal adds.
inline __m256i Dot8(__m256i u, __m256i s) {
  return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
}

// Lane r of the result = sum of the 8 lanes of v[r].
inline __m256i ReduceRows(const __m256i (&v)[8]) {
  const __m256i h01 = _mm256_hadd_epi32(v[0], v[1]);
  const __m256i h23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i h45 = _mm256_hadd_epi32(v[4], v[5]);
  const __m256i h67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i g0 = _mm256_hadd_epi32(h01, h23);  // rows 0-3 | rows 0-3 (upper lanes)
  const __m256i g1 = _mm256_hadd_epi32(h45, h67);  // rows 4-7 | rows 4-7
  return _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20),
                          _mm256_permute2x128_si256(g0, g1, 0x31));
}

template <DType T>
void Gemv8(const GemmArgs& a, int64_t j0, int count) {
  constexpr int64_t kBlockBytes = BlockBytes(T);
  constexpr int kQuantOffset = T == DType::kQ4_1 ? 4 : 2;
  const int nb = a.k / 32;
  const int64_t rb = a.row_bytes;
  const __m256i rows = _mm512_castsi512_si256(RowOffsets(rb, count));
  const uint8_t* wr[8];
  for (int r = 0; r < 8; ++r) wr[r] = a.w + (j0 + std::min(r, count - 1)) * rb;
  __m256 acc = _mm256_setzero_ps();
  // Prefetch the group's bytes 12 KiB ahead, as the AVX2 GEMV does (the 8
  // interleaved rows defeat the hardware prefetchers).
  constexpr int64_t kPrefetchBytes = 12 << 10;
  const uint8_t* pf = wr[0] + kPrefetchBytes;
  for (int b = 0; b < nb; ++b) {
    for (int64_t o = 0; o < 8 * kBlockBytes; o += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(pf + b * 8 * kBlockBytes + o), _MM_HINT_T0);
    }
    const ActBlock& xb = a.xq[b];
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs));
    __m256i v[8];
    for (int r = 0; r < 8; ++r) {
      const uint8_t* q = wr[r] + b * kBlockBytes + kQuantOffset;
      if constexpr (T == DType::kQ8_0) {
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
        v[r] = Dot8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w));
      } else {
        const __m256i bytes =
            _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
        const __m256i nib = _mm256_and_si256(
            _mm256_srlv_epi64(bytes, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0xF));
        v[r] = Dot8(nib, xv);
      }
    }
    const __m256 isum = _mm256_cvtepi32_ps(ReduceRows(v));
    const __m256i hdr =
        _mm256_i32gather_epi32(reinterpret_cast<const int*>(wr[0] + b * kBlockBytes), rows, 1);
    const __m256 dw = _mm256_cvtph_ps(_mm256_cvtepi32_epi16(hdr));
    acc = _mm256_fmadd_ps(isum, _mm256_mul_ps(dw, _mm256_set1_ps(xb.d)), acc);
    if constexpr (T == DType::kQ4_1) {
      const __m256 m = _mm256_cvtph_ps(_mm256_cvtepi32_epi16(_mm256_srli_epi32(hdr, 16)));
      acc = _mm256_fmadd_ps(m, _mm256_set1_ps(xb.sum), acc);
    }
    if constexpr (T == DType::kQ4_0) {
      acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(-8)), _mm256_set1_ps(xb.sum), acc);
    }
  }
  const __mmask8 mask = static_cast<__mmask8>((1u << count) - 1);
  if (a.bias != nullptr) acc = _mm256_add_ps(acc, _mm256_maskz_loadu_ps(mask, a.bias + j0));
  _mm256_mask_storeu_ps(a.y + j0, mask, acc);
}

template <DType T>
void GemmTileT(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.m == 1) {
    for (int64_t j = n_begin; j < n_end; j += 8) {
      Gemv8<T>(a, j, static_cast<int>(std::min<int64_t>(8, n_end - j)));
    }
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
