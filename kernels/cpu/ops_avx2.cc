// AVX2/FMA build of the non-GEMM op bodies (ops_impl.inc); chosen at runtime.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/op_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define TPS_OPS_AVX2 1
#else
#define TPS_OPS_AVX2 0
#endif

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
#undef TPS_OPS_AVX2
