// cuda::RmsNorm and cuda::AddRmsNorm: one 256-thread block per row; the sum
// of squares is accumulated in f32 per thread and reduced across the block.
// The fused kernel adds the residual first, element by element as cuda::Add
// does, so both give the same bits as Add followed by RmsNorm. Both launch
// programmatically on a Stream that asks for it (launch.cuh) and wait for the
// previous kernel before their first read. With a Bf16Copy they write y as
// GemmViaBf16's bf16 copy instead (the same f32 values, rounded).
#include <cuda_runtime.h>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/quant.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// Row y = x * inv * weight: f32 at yr, or (y16 set) bf16 at y16 up to ld,
// the columns past dim zero.
__device__ __forceinline__ void StoreNormRow(const float* xr, float inv,
                                             const float* __restrict__ weight, float* yr,
                                             uint16_t* y16, int dim, int ld) {
  if (y16 == nullptr) {
    for (int i = threadIdx.x; i < dim; i += kThreads) yr[i] = xr[i] * inv * __ldg(weight + i);
    return;
  }
  for (int i = threadIdx.x; i < ld; i += kThreads) {
    y16[i] = i < dim ? Bf16Bits(xr[i] * inv * __ldg(weight + i)) : uint16_t{0};
  }
}

__global__ void __launch_bounds__(kThreads)
    RmsNormKernel(const float* x, const float* __restrict__ weight, float* y, uint16_t* y16,
                  int dim, int ld, float eps) {
  __shared__ float scratch[32];
  AllowDependents();
  WaitForPrimary();
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += kThreads) ss = fmaf(xr[i], xr[i], ss);
  ss = BlockSum(ss, scratch);
  const float inv = rsqrtf(ss / static_cast<float>(dim) + eps);
  // Safe in place: every thread reads x[i] and writes y[i] for the same i, and
  // all reads of the sum above finished inside BlockSum.
  StoreNormRow(xr, inv, weight, yr, y16 == nullptr ? nullptr : y16 + blockIdx.x * int64_t{ld}, dim,
               ld);
}

__global__ void __launch_bounds__(kThreads)
    AddRmsNormKernel(float* x, const float* residual, const float* __restrict__ weight, float* y,
                     uint16_t* y16, int dim, int ld, float eps) {
  __shared__ float scratch[32];
  AllowDependents();
  WaitForPrimary();
  float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  const float* rr = residual + static_cast<int64_t>(blockIdx.x) * dim;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += kThreads) {
    const float v = xr[i] + rr[i];
    xr[i] = v;
    ss = fmaf(v, v, ss);
  }
  ss = BlockSum(ss, scratch);
  const float inv = rsqrtf(ss / static_cast<float>(dim) + eps);
  StoreNormRow(xr, inv, weight, yr, y16 == nullptr ? nullptr : y16 + blockIdx.x * int64_t{ld}, dim,
               ld);
}

}  // namespace

absl::Status AddRmsNorm(const AddRmsNormParams& p, const Stream& stream, const Bf16Copy& copy) {
  if (p.rows < 0 || p.dim <= 0) return absl::InvalidArgumentError("AddRmsNorm: bad shape");
  if (p.rows == 0) return absl::OkStatus();
  if (p.x == nullptr || p.residual == nullptr || p.weight == nullptr ||
      (p.y == nullptr && copy.data == nullptr)) {
    return absl::InvalidArgumentError("AddRmsNorm: null pointer");
  }
  LaunchKernel("AddRmsNormKernel", AddRmsNormKernel, p.rows, kThreads, 0, ForLaunch(stream), p.x,
               p.residual, p.weight, p.y, copy.data, p.dim,
               static_cast<int>(GemmViaBf16RowElems(p.dim)), p.eps);
  return LaunchStatus("AddRmsNormKernel");
}

absl::Status RmsNorm(const RmsNormParams& p, const Stream& stream, const Bf16Copy& copy) {
  if (p.rows < 0 || p.dim <= 0) return absl::InvalidArgumentError("RmsNorm: bad shape");
  if (p.rows == 0) return absl::OkStatus();
  if (p.x == nullptr || p.weight == nullptr || (p.y == nullptr && copy.data == nullptr)) {
    return absl::InvalidArgumentError("RmsNorm: null pointer");
  }
  LaunchKernel("RmsNormKernel", RmsNormKernel, p.rows, kThreads, 0, ForLaunch(stream), p.x,
               p.weight, p.y, copy.data, p.dim, static_cast<int>(GemmViaBf16RowElems(p.dim)),
               p.eps);
  return LaunchStatus("RmsNormKernel");
}

}  // namespace tpserve::kernels::cuda
