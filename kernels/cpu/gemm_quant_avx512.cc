// Quantized GEMM on CPUs with AVX-512 VNNI, chosen by gemm.cc at
// Isa::kAvxVnni where HasAvx512Vnni(): the block-int32 arithmetic of
// gemm_packed_x86.inc (the AMX kernel's, so the same bits). For m >= 2 each
// group of 16 weight rows is packed once per call, then per block and
// activation row eight 512-bit vpdpbusd (4 activation bytes broadcast) give
// the 16 rows' exact block dots, one lane per weight row, and one convert and
// two FMAs scale them. GEMV (m = 1) is the shared one.
//
// vpdpbusd multiplies unsigned by signed bytes: Q4 nibbles are unsigned as
// they are; Q8_0 quants are packed as w + 128 and the block dot corrected by
// -128 * sum(q_x), exact in int32 like the rest.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

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

#include "kernels/cpu/gemm_packed_x86.inc"

// The 4 activation bytes [4r, 4r + 4) of a block in every lane.
inline __m512i Bcast4(const ActBlock& xb, int r) {
  int32_t v;
  std::memcpy(&v, xb.qs + 4 * r, 4);
  return _mm512_set1_epi32(v);
}

// Activation rows [i0, i0 + MR) x one packed group of 16 weight rows
// [j0, j0 + count). Per block and row the 8 vpdpbusd form two chains (even
// and odd groups of 4 values), added in int32: exact, so the order is free.
// Q8_0: x_fix[i * nb + b] = -128 * sum(q_x) starts one chain. Accumulators
// are named variables (GCC 12 keeps an array of them in memory).
template <DType T, int MR>
void PackedRows(const GemmArgs& a, const PackedBlock* packed, const int32_t* x_fix, int i0,
                int64_t j0, int count) {
  static_assert(MR >= 1 && MR <= 8, "up to 8 activation rows per step");
  const int nb = a.k / 32;
  const ActBlock* x = a.xq + int64_t{i0} * nb;
  if constexpr (T == DType::kQ8_0) x_fix += int64_t{i0} * nb;
  const __m512 z = _mm512_setzero_ps();
  const __m512i zi = _mm512_setzero_si512();
  __m512 acc0 = z, acc1 = z, acc2 = z, acc3 = z, acc4 = z, acc5 = z, acc6 = z, acc7 = z;
  for (int b = 0; b < nb; ++b) {
    const PackedBlock& p = packed[b];
    const __m512i w0 = _mm512_load_si512(p.b[0]), w1 = _mm512_load_si512(p.b[1]);
    const __m512i w2 = _mm512_load_si512(p.b[2]), w3 = _mm512_load_si512(p.b[3]);
    const __m512i w4 = _mm512_load_si512(p.b[4]), w5 = _mm512_load_si512(p.b[5]);
    const __m512i w6 = _mm512_load_si512(p.b[6]), w7 = _mm512_load_si512(p.b[7]);
    const __m512 dw = _mm512_load_ps(p.d);
    const __m512 off = _mm512_load_ps(p.off);
#define TPS_ROW(i)                                                                     \
  if constexpr (MR > i) {                                                              \
    const ActBlock& xb = x[int64_t{i} * nb + b];                                       \
    const __m512i s00 = T == DType::kQ8_0 ? _mm512_set1_epi32(x_fix[i * nb + b]) : zi; \
    __m512i s0 = _mm512_dpbusd_epi32(s00, w0, Bcast4(xb, 0));                          \
    __m512i s1 = _mm512_dpbusd_epi32(zi, w1, Bcast4(xb, 1));                           \
    s0 = _mm512_dpbusd_epi32(s0, w2, Bcast4(xb, 2));                                   \
    s1 = _mm512_dpbusd_epi32(s1, w3, Bcast4(xb, 3));                                   \
    s0 = _mm512_dpbusd_epi32(s0, w4, Bcast4(xb, 4));                                   \
    s1 = _mm512_dpbusd_epi32(s1, w5, Bcast4(xb, 5));                                   \
    s0 = _mm512_dpbusd_epi32(s0, w6, Bcast4(xb, 6));                                   \
    s1 = _mm512_dpbusd_epi32(s1, w7, Bcast4(xb, 7));                                   \
    const __m512 isum = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));                  \
    acc##i = _mm512_fmadd_ps(isum, _mm512_mul_ps(dw, _mm512_set1_ps(xb.d)), acc##i);   \
    if constexpr (T != DType::kQ8_0) {                                                 \
      acc##i = _mm512_fmadd_ps(off, _mm512_set1_ps(xb.sum), acc##i);                   \
    }                                                                                  \
  }
    TPS_ROW(0) TPS_ROW(1) TPS_ROW(2) TPS_ROW(3) TPS_ROW(4) TPS_ROW(5) TPS_ROW(6) TPS_ROW(7)
#undef TPS_ROW
  }
  if constexpr (MR > 0) StorePackedRow(a, acc0, i0 + 0, j0, count);
  if constexpr (MR > 1) StorePackedRow(a, acc1, i0 + 1, j0, count);
  if constexpr (MR > 2) StorePackedRow(a, acc2, i0 + 2, j0, count);
  if constexpr (MR > 3) StorePackedRow(a, acc3, i0 + 3, j0, count);
  if constexpr (MR > 4) StorePackedRow(a, acc4, i0 + 4, j0, count);
  if constexpr (MR > 5) StorePackedRow(a, acc5, i0 + 5, j0, count);
  if constexpr (MR > 6) StorePackedRow(a, acc6, i0 + 6, j0, count);
  if constexpr (MR > 7) StorePackedRow(a, acc7, i0 + 7, j0, count);
}

// All m rows, weight rows [n_begin, n_end): each group of 16 weight rows is
// packed once (10 cache lines per block, L1-resident for k <= 2048) and
// passed over every activation row.
template <DType T>
void PackedGemm(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  const int nb = a.k / 32;
  thread_local std::vector<PackedBlock> packed;
  if (packed.size() < static_cast<size_t>(nb)) packed.resize(nb);
  thread_local std::vector<int32_t> x_fix;
  if constexpr (T == DType::kQ8_0) {
    const int64_t blocks = int64_t{a.m} * nb;
    if (x_fix.size() < static_cast<size_t>(blocks)) x_fix.resize(blocks);
    for (int64_t i = 0; i < blocks; ++i) {
      int32_t sum = 0;
      for (int8_t q : a.xq[i].qs) sum += q;
      x_fix[i] = -128 * sum;
    }
  }
  for (int64_t j0 = n_begin; j0 < n_end; j0 += 16) {
    const int count = static_cast<int>(std::min<int64_t>(16, n_end - j0));
    PackGroup<T, /*kBiasedQ8=*/true>(a, j0, count, packed.data());
    const PackedBlock* p = packed.data();
    int i = 0;
    for (; i + 8 <= a.m; i += 8) PackedRows<T, 8>(a, p, x_fix.data(), i, j0, count);
    if (i + 4 <= a.m) PackedRows<T, 4>(a, p, x_fix.data(), i, j0, count), i += 4;
    if (i + 2 <= a.m) PackedRows<T, 2>(a, p, x_fix.data(), i, j0, count), i += 2;
    if (i < a.m) PackedRows<T, 1>(a, p, x_fix.data(), i, j0, count);
  }
}

template <DType T>
void GemmTileT(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.m == 1) {
    Gemv<T>(a, n_begin, n_end);
  } else {
    PackedGemm<T>(a, n_begin, n_end);
  }
}

}  // namespace

void GemmTileQuant(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
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
