// Portable build of the non-GEMM op bodies (ops_impl.inc), attention included.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/op_kernels.h"

#define TPS_OPS_ATTENTION 1

namespace tpserve::kernels::cpu::portable {
#include "kernels/cpu/ops_impl.inc"
}  // namespace tpserve::kernels::cpu::portable
#undef TPS_OPS_ATTENTION
