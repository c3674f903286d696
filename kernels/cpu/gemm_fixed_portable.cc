// Portable partition-invariant GEMM tiles (ops.h GemmParams::y_fixed): each
// quantized block, or each `chunk` columns of a plain weight row, gives one
// partial that becomes a 2^-32 fixed-point integer; the integers are summed.
// For quantized weights the x86 kernels (gemm_fixed_x86_impl.inc) compute
// the same terms and give the same bits; for F32/F16/BF16 the f32 partial of a
// chunk is summed here in column order, there in 8 lanes.
#include <cstdint>
#include <cstring>

#include "kernels/cpu/gemm_kernels.h"

namespace tpserve::kernels::cpu::portable {
namespace {

// Exact integer dot of one quantized weight block with an activation block.
template <DType T>
int32_t BlockDot(const uint8_t* block, const int8_t* xq) {
  int32_t s = 0;
  if constexpr (T == DType::kQ8_0) {
    const int8_t* q = reinterpret_cast<const BlockQ8_0*>(block)->qs;
    for (int j = 0; j < 32; ++j) s += int32_t{q[j]} * xq[j];
  } else {
    const uint8_t* q = T == DType::kQ4_0 ? reinterpret_cast<const BlockQ4_0*>(block)->qs
                                         : reinterpret_cast<const BlockQ4_1*>(block)->qs;
    for (int j = 0; j < 16; ++j) {
      s += int32_t{q[j] & 0xF} * xq[j] + int32_t{q[j] >> 4} * xq[j + 16];
    }
  }
  return s;
}

template <DType T>
int64_t QuantRow(const uint8_t* w, const ActBlock* x, int nb) {
  uint64_t acc = 0;  // sums wrap mod 2^64, as the all-reduce's do
  for (int b = 0; b < nb; ++b) {
    const uint8_t* blk = w + b * BlockBytes(T);
    uint16_t d, m = 0;
    std::memcpy(&d, blk, 2);
    if constexpr (T == DType::kQ4_1) std::memcpy(&m, blk + 2, 2);
    const float scale = F16ToF32(d) * x[b].d;
    const float off = T == DType::kQ4_1   ? F16ToF32(m) * x[b].sum
                      : T == DType::kQ4_0 ? F16ToF32(d) * x[b].sum
                                          : 0.0f;
    const double term = QuantBlockTerm<T>(scale, BlockDot<T>(blk, x[b].qs), off);
    acc += static_cast<uint64_t>(ToFixedPoint(term));
  }
  return static_cast<int64_t>(acc);
}

float WeightAt(DType t, const uint8_t* w, int i) {
  if (t == DType::kF32) {
    float f;
    std::memcpy(&f, w + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, w + 2 * i, 2);
  return t == DType::kF16 ? F16ToF32(h) : BF16ToF32(h);
}

int64_t FloatRow(DType t, const uint8_t* w, const float* x, int k, int chunk) {
  uint64_t acc = 0;
  for (int c = 0; c < k; c += chunk) {
    float partial = 0.0f;
    for (int i = c; i < c + chunk; ++i) partial += WeightAt(t, w, i) * x[i];
    acc += static_cast<uint64_t>(ToFixedPoint(partial));
  }
  return static_cast<int64_t>(acc);
}

}  // namespace

void GemmTileFixed(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  const int nb = a.k / 32;
  for (int64_t j = n_begin; j < n_end; ++j) {
    const uint8_t* w = a.w + j * a.row_bytes;
    for (int i = 0; i < a.m; ++i) {
      const ActBlock* x = a.xq + int64_t{i} * nb;
      int64_t v = 0;
      switch (a.w_dtype) {
        case DType::kQ8_0:
          v = QuantRow<DType::kQ8_0>(w, x, nb);
          break;
        case DType::kQ4_0:
          v = QuantRow<DType::kQ4_0>(w, x, nb);
          break;
        case DType::kQ4_1:
          v = QuantRow<DType::kQ4_1>(w, x, nb);
          break;
        default:
          v = FloatRow(a.w_dtype, w, a.x + i * a.x_stride, a.k, a.chunk);
          break;
      }
      a.y_fixed[i * a.y_stride + j] = v;
    }
  }
}

}  // namespace tpserve::kernels::cpu::portable
