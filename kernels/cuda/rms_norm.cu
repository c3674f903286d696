// cuda::RmsNorm: one 256-thread block per row; the sum of squares is
// accumulated in f32 per thread and reduced across the block.
#include <cuda_runtime.h>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    RmsNormKernel(const float* x, const float* __restrict__ weight, float* y, int dim, float eps) {
  __shared__ float scratch[32];
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

}  // namespace

absl::Status RmsNorm(const RmsNormParams& p, const Stream& stream) {
  if (p.rows < 0 || p.dim <= 0) return absl::InvalidArgumentError("RmsNorm: bad shape");
  if (p.rows == 0) return absl::OkStatus();
  if (p.x == nullptr || p.weight == nullptr || p.y == nullptr) {
    return absl::InvalidArgumentError("RmsNorm: null pointer");
  }
  if (p.rows > 2147483647) return absl::InvalidArgumentError("RmsNorm: too many rows");
  RmsNormKernel<<<p.rows, kThreads, 0, static_cast<cudaStream_t>(stream.cuda_stream)>>>(
      p.x, p.weight, p.y, p.dim, p.eps);
  return LaunchStatus("RmsNormKernel");
}

}  // namespace tpserve::kernels::cuda
