// The prefill half of cuda::Gemm: the tensor-core kernel with converting
// loaders (f32 activations, any dtype.h weight dequantised in registers), so
// quantized weights reach the tensor cores without a bf16 copy in memory.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/tensor_core_gemm.cuh"

namespace tpserve::kernels::cuda {
namespace {

template <DType kW>
absl::Status Launch(const TcArgs& args, cudaStream_t stream) {
  auto kernel = TensorCoreGemmKernel<ConvertLoader<DType::kF32>, ConvertLoader<kW>>;
  TPS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(kTcSharedBytes)));
  kernel<<<TensorCoreGrid(args.m, args.n), kTcThreads, kTcSharedBytes, stream>>>(args);
  return LaunchStatus("TensorCoreGemmKernel<f32, weights>");
}

}  // namespace

absl::Status LaunchTensorCoreGemm(const GemmParams& p, int64_t x_stride, int64_t y_stride,
                                  cudaStream_t stream) {
  if ((p.m + kBM - 1) / kBM > 65535)
    return absl::InvalidArgumentError("Gemm: m too large for one launch");
  const TcArgs args{{p.x, p.m, x_stride}, {p.w, p.n, p.k}, p.bias, p.y, p.m, p.n, p.k, y_stride};
  TPS_WEIGHT_DTYPE_SWITCH(p.w_dtype, kW, { return Launch<kW>(args, stream); });
}

}  // namespace tpserve::kernels::cuda
