// Internal to kernels/cuda: the tensor-core halves of cuda::Gemm (gemm_tc.cu
// for prefill, gemm_mma.cu for decode batches) and its partition-invariant
// output (gemm_fixed.cu), called by the dispatcher in gemm.cu once
// parameters are validated.
#ifndef TPSERVE_KERNELS_CUDA_GEMM_INTERNAL_H_
#define TPSERVE_KERNELS_CUDA_GEMM_INTERNAL_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/ops.h"

namespace tpserve::kernels::cuda {

// y = x w^T (+ bias) with f32 x and w in p.w_dtype, both rounded to bf16 on
// their way into shared memory; f32 accumulation. Strides already resolved.
absl::Status LaunchTensorCoreGemm(const GemmParams& p, int64_t x_stride, int64_t y_stride,
                                  cudaStream_t stream);
// The same product through bf16 copies of x and w in `scratch` (GemmViaBf16).
absl::Status LaunchViaBf16Gemm(const GemmParams& p, int64_t x_stride, int64_t y_stride,
                               uint16_t* scratch, cudaStream_t stream, Bf16Gemm gemm,
                               bool x_in_scratch);

// Whether GemmWgmmaQuantWeights takes weights of `w_dtype` (Q8_0, Q4_0, Q4_1).
bool WgmmaDequantizes(DType w_dtype);
// GemmBf16Wgmma (or, `tma`, GemmBf16WgmmaTma) with B = w^T: w (p.n, p.k)
// Q8_0 / Q4_0 / Q4_1 in the device layout (weight_layout.h), dequantised by
// the kernel into its shared-memory tiles with ConvertRows's arithmetic, so
// the result is GemmViaBf16's on that kernel without w's bf16 copy (p.b
// unused; p.k a multiple of 32; Q8_0 on the TMA kernel always on 128-wide
// tiles).
absl::Status GemmWgmmaQuantWeights(const GemmBf16Params& p, const void* w, DType w_dtype, bool tma,
                                   const Stream& stream);

// Decode batches on tensor cores (gemm_mma.cu): whether p (m, weight type,
// alignment) is one the kernel takes, and the launch, swiglu as GemmSwiglu,
// its blocks prefetching `prefetch` (Gemm's).
bool SkinnyMmaSupports(const GemmParams& p);
absl::Status LaunchSkinnyMma(const GemmParams& p, bool swiglu, int64_t x_stride, int64_t y_stride,
                             const LaunchStream& stream, const L2Prefetch& prefetch);

// GemmParams::y_fixed output for any m (gemm_fixed.cu).
absl::Status LaunchFixedGemm(const GemmParams& p, int64_t x_stride, int64_t y_stride,
                             cudaStream_t stream);

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_GEMM_INTERNAL_H_
