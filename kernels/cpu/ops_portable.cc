// Portable build of the non-GEMM op bodies (ops_impl.inc).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/op_kernels.h"

#define TPS_OPS_AVX2 0

namespace tpserve::kernels::cpu::portable {
#include "kernels/cpu/ops_impl.inc"
}  // namespace tpserve::kernels::cpu::portable
#undef TPS_OPS_AVX2
