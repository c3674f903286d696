// AVX2 + FMA + F16C GEMM tile kernels (bodies in gemm_x86_impl.inc and
// gemm_fixed_x86_impl.inc), selected
// at runtime (isa.h).
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
void GemmTileFixed(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  portable::GemmTileFixed(a, n_begin, n_end);
}
}  // namespace tpserve::kernels::cpu::avx2
#else

#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define TPS_GEMM_VNNI 0

namespace tpserve::kernels::cpu::avx2 {
#include "kernels/cpu/gemm_x86_impl.inc"
// Uses the helpers above.
#include "kernels/cpu/gemm_fixed_x86_impl.inc"
}  // namespace tpserve::kernels::cpu::avx2

#undef TPS_GEMM_VNNI
#pragma GCC pop_options

#endif  // __x86_64__
