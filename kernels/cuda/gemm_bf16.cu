// cuda::GemmBf16: the tensor-core GEMM (tensor_core_gemm.cuh) on bf16
// operands, both loaded with cp.async (k % 8 == 0 keeps every 16-byte chunk
// either fully inside or fully outside the matrix).
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/tensor_core_gemm.cuh"

namespace tpserve::kernels::cuda {

absl::Status GemmBf16(const GemmBf16Params& p, const Stream& stream) {
  if (p.m < 0 || p.n < 0 || p.k <= 0) return absl::InvalidArgumentError("GemmBf16: bad shape");
  if (p.k % 8 != 0) return absl::InvalidArgumentError("GemmBf16: k must be a multiple of 8");
  if (p.m == 0 || p.n == 0) return absl::OkStatus();
  if (p.a == nullptr || p.b == nullptr || p.c == nullptr)
    return absl::InvalidArgumentError("GemmBf16: null pointer");
  if ((reinterpret_cast<uintptr_t>(p.a) | reinterpret_cast<uintptr_t>(p.b)) % 16 != 0) {
    return absl::InvalidArgumentError("GemmBf16: a and b must be 16-byte aligned");
  }
  const int64_t c_stride = p.c_stride == 0 ? p.n : p.c_stride;
  if (c_stride < p.n) return absl::InvalidArgumentError("GemmBf16: c_stride below n");
  if ((p.m + kBM - 1) / kBM > 65535)
    return absl::InvalidArgumentError("GemmBf16: m too large for one launch");
  const TcArgs args{{p.a, p.m, p.k}, {p.b, p.n, p.k}, p.bias, p.c, p.m, p.n, p.k, c_stride};
  TPS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      TensorCoreGemmKernel<CpAsyncBf16Loader, CpAsyncBf16Loader>,
      cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kTcSharedBytes)));
  TensorCoreGemmKernel<CpAsyncBf16Loader, CpAsyncBf16Loader>
      <<<TensorCoreGrid(p.m, p.n), kTcThreads, kTcSharedBytes,
         static_cast<cudaStream_t>(stream.cuda_stream)>>>(args);
  return LaunchStatus("TensorCoreGemmKernel<bf16, bf16>");
}

}  // namespace tpserve::kernels::cuda
