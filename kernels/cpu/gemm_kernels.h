// Internal to the CPU GEMM (gemm.cc): the activation block format and the
// per-ISA tile kernels. Not part of the kernel API.
//
// Quantized weights are multiplied without dequantising them: each activation
// row is quantized once per GEMM into ActBlocks (32 int8 values, f32 scale,
// and the scaled block sum), then every (activation block, weight block) pair
// is an int8 dot product times the two scales:
//   Q8_0: d_w * d_x * sum(q_w * q_x)
//   Q4_0: d_w * (d_x * sum(nib * q_x) - 8 * xsum)        xsum = d_x * sum(q_x)
//   Q4_1: d_w * d_x * sum(nib * q_x) + m_w * xsum
#ifndef TPSERVE_KERNELS_CPU_GEMM_KERNELS_H_
#define TPSERVE_KERNELS_CPU_GEMM_KERNELS_H_

#include <cstdint>
#include <cstring>

#include "formats/dtype.h"
#include "kernels/ops.h"

namespace tpserve::kernels::cpu {

struct ActBlock {
  float d;        // scale: x ~= d * qs[i]
  float sum;      // d * sum(qs), for the Q4 offset terms
  int8_t qs[32];  // round(x / d), |qs| <= 127
};
static_assert(sizeof(ActBlock) == 40, "ActBlock is 40 bytes");

// One GEMM's operands as the tile kernels see them.
struct GemmArgs {
  const float* x = nullptr;      // (m, k) f32 activations, for F32/F16/BF16 weights
  int64_t x_stride = 0;          // floats between rows of x
  const ActBlock* xq = nullptr;  // (m, k / 32) quantized activations, for Q weights
  const uint8_t* w = nullptr;    // (n, row_bytes)
  int64_t row_bytes = 0;
  DType w_dtype = DType::kF32;
  const float* bias = nullptr;  // (n) or null
  float* y = nullptr;           // (m, n) at y_stride
  int64_t y_stride = 0;
  int m = 0;
  int k = 0;
  // Partition-invariant mode (ops.h GemmParams::y_fixed): output (m, n) at
  // y_stride, and the columns per f32 partial for F32/F16/BF16 weights.
  int64_t* y_fixed = nullptr;
  int chunk = 32;
};

// The fixed-point arithmetic of GemmParams::y_fixed, shared by every ISA so
// that quantized weights give the same bits on all of them.
//
// One quantized block's term from its exact integer dot `isum` and the f32
// products scale = d_w * d_x and off (Q4_0: d_w * xsum, Q4_1: m_w * xsum). In
// double, scale * isum is exact (24 + 20 bits), so fused or not the term is
// rounded once.
template <DType T>
inline double QuantBlockTerm(float scale, int32_t isum, float off) {
  const double p = static_cast<double>(scale) * static_cast<double>(isum);
  if constexpr (T == DType::kQ4_0) return p - 8.0 * static_cast<double>(off);
  if constexpr (T == DType::kQ4_1) return p + static_cast<double>(off);
  return p;
}

// round(v * 2^kFixedPointShift), clamped to +-2^51 (NaN gives -2^51), as the
// x86 kernels compute it: adding 1.5 * 2^52 leaves the rounded integer in the
// low mantissa bits.
inline int64_t ToFixedPoint(double v) {
  constexpr double kLimit = 0x1p51;
  constexpr double kMagic = 0x1.8p52;
  double s = v * static_cast<double>(int64_t{1} << kFixedPointShift);
  s = s > -kLimit ? s : -kLimit;
  s = s < kLimit ? s : kLimit;
  const double r = s + kMagic;
  int64_t bits, magic_bits;
  std::memcpy(&bits, &r, 8);
  std::memcpy(&magic_bits, &kMagic, 8);
  return bits - magic_bits;
}

namespace portable {
// Quantizes x[0, k) (k a multiple of 32) into k / 32 blocks.
void QuantizeRow(const float* x, int k, ActBlock* out);
// Computes output columns [n_begin, n_end) for all m rows.
void GemmTile(const GemmArgs& a, int64_t n_begin, int64_t n_end);
// Partition-invariant output: a.y_fixed for columns [n_begin, n_end).
void GemmTileFixed(const GemmArgs& a, int64_t n_begin, int64_t n_end);
}  // namespace portable

namespace avx2 {
void QuantizeRow(const float* x, int k, ActBlock* out);
void GemmTile(const GemmArgs& a, int64_t n_begin, int64_t n_end);
// Partition-invariant output: a.y_fixed for columns [n_begin, n_end).
void GemmTileFixed(const GemmArgs& a, int64_t n_begin, int64_t n_end);
}  // namespace avx2

namespace avxvnni {
void QuantizeRow(const float* x, int k, ActBlock* out);
void GemmTile(const GemmArgs& a, int64_t n_begin, int64_t n_end);
// Partition-invariant output: a.y_fixed for columns [n_begin, n_end).
void GemmTileFixed(const GemmArgs& a, int64_t n_begin, int64_t n_end);
}  // namespace avxvnni

namespace amx {
// Quantized weights on AMX tiles (gemm_amx.cc); other types forward to
// avxvnni (gemm.cc sends them to avx512::GemmTileFloat first: every AMX CPU
// has AVX-512). For m >= 2, a.xq must hold RoundUp(m, 16) rows (tail rows zero):
// the tiles load whole 16-row panels.
void GemmTile(const GemmArgs& a, int64_t n_begin, int64_t n_end);
}  // namespace amx

namespace avx512 {
// F32/F16/BF16 weights with 16-lane f32 FMA (gemm_float_avx512.cc).
void GemmTileFloat(const GemmArgs& a, int64_t n_begin, int64_t n_end);
// Q4_0/Q4_1/Q8_0 weights with 512-bit vpdpbusd (gemm_quant_avx512.cc), every
// m: the AMX kernel's block-int32 arithmetic and bits (gemm_packed_x86.inc).
void GemmTileQuant(const GemmArgs& a, int64_t n_begin, int64_t n_end);
}  // namespace avx512

}  // namespace tpserve::kernels::cpu

#endif  // TPSERVE_KERNELS_CPU_GEMM_KERNELS_H_
