// AVX-512 build of the attention bodies (ops_impl.inc): 16-lane dot products
// and axpys over K/V rows. Chosen from kAvxVnni on CPUs with AVX-512F/BW/VL
// (isa.h HasAvx512).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu/op_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define TPS_OPS_AVX2 1
#define TPS_OPS_AVX512 1
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")
// GCC 12's AVX-512 intrinsics start from _mm*_undefined_*() (`__m256d __Y =
// __Y` in _mm512_reduce_add_ps), which -Wmaybe-uninitialized reports once
// inlined (as in gemm_amx.cc).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#else
#define TPS_OPS_AVX2 0
#define TPS_OPS_AVX512 0
#endif

namespace tpserve::kernels::cpu::avx512 {
#include "kernels/cpu/ops_impl.inc"
}  // namespace tpserve::kernels::cpu::avx512

#if defined(__x86_64__)
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
#undef TPS_OPS_AVX2
#undef TPS_OPS_AVX512
