// cuda::RmsNorm and cuda::AddRmsNorm: one 256-thread block per row; the sum
// of squares is accumulated in f32 per thread and reduced across the block.
// The fused kernel adds the residual first, element by element as cuda::Add
// does, so both give the same bits as Add followed by RmsNorm. Both launch
// programmatically on a Stream that asks for it (launch.cuh) and wait for the
// previous kernel before their first read.
#include <cuda_runtime.h>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/launch.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    RmsNormKernel(const float* x, const float* __restrict__ weight, float* y, int dim, float eps) {
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
  for (int i = threadIdx.x; i < dim; i += kThreads) yr[i] = xr[i] * inv * __ldg(weight + i);
}

__global__ void __launch_bounds__(kThreads)
    AddRmsNormKernel(float* x, const float* residual, const float* __restrict__ weight, float* y,
                     int dim, float eps) {
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
  for (int i = threadIdx.x; i < dim; i += kThreads) yr[i] = xr[i] * inv * __ldg(weight + i);
}

}  // namespace

absl::Status AddRmsNorm(const AddRmsNormParams& p, const Stream& stream) {
  if (p.rows < 0 || p.dim <= 0) return absl::InvalidArgumentError("AddRmsNorm: bad shape");
  if (p.rows == 0) return absl::OkStatus();
  if (p.x == nullptr || p.residual == nullptr || p.weight == nullptr || p.y == nullptr) {
    return absl::InvalidArgumentError("AddRmsNorm: null pointer");
  }
  LaunchKernel("AddRmsNormKernel", AddRmsNormKernel, p.rows, kThreads, 0, ForLaunch(stream), p.x,
               p.residual, p.weight, p.y, p.dim, p.eps);
  return LaunchStatus("AddRmsNormKernel");
}

absl::Status RmsNorm(const RmsNormParams& p, const Stream& stream) {
  if (p.rows < 0 || p.dim <= 0) return absl::InvalidArgumentError("RmsNorm: bad shape");
  if (p.rows == 0) return absl::OkStatus();
  if (p.x == nullptr || p.weight == nullptr || p.y == nullptr) {
    return absl::InvalidArgumentError("RmsNorm: null pointer");
  }
  LaunchKernel("RmsNormKernel", RmsNormKernel, p.rows, kThreads, 0, ForLaunch(stream), p.x,
               p.weight, p.y, p.dim, p.eps);
  return LaunchStatus("RmsNormKernel");
}

}  // namespace tpserve::kernels::cuda
