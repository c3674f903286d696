// AVX2/FMA build of the elementwise op bodies (ops_impl.inc); chosen at
// runtime. Its attention is attention_avx2.cc.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/op_kernels.h"

#define TPS_OPS_ATTENTION 0

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace tpserve::kernels::cpu::avx2 {
#include "kernels/cpu/ops_impl.inc"
}  // namespace tpserve::kernels::cpu::avx2

#if defined(__x86_64__)
#pragma GCC pop_options
#endif
#undef TPS_OPS_ATTENTION
