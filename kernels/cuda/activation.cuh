// Activation functions shared by the kernels that apply them (the Swiglu
// kernel and the GEMM epilogue fused with it), so both give the same bits.
//
//   out = SiluMul(gate, up);  // silu(gate) * up
#ifndef TPSERVE_KERNELS_CUDA_ACTIVATION_CUH_
#define TPSERVE_KERNELS_CUDA_ACTIVATION_CUH_

namespace tpserve::kernels::cuda {

// silu(g) * u with silu(g) = g / (1 + exp(-g)).
__device__ __forceinline__ float SiluMul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_ACTIVATION_CUH_
