// Portable build of the non-GEMM op bodies (ops_impl.inc).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/op_kernels.h"

namespace tpserve::kernels::cpu::portable {
#include "kernels/cpu/ops_impl.inc"
}  // namespace tpserve::kernels::cpu::portable
