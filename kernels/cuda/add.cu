// cuda::Add: the residual add y = a + b, one thread per element (grid-stride);
// cuda::AddFixedPoint the same with a fixed-point b, rounded once. Add
// launches programmatically where the Stream asks (launch.cuh).
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/launch.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    AddKernel(const float* a, const float* b, float* y, int64_t n) {
  AllowDependents();
  WaitForPrimary();
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    y[i] = a[i] + b[i];
  }
}

__global__ void __launch_bounds__(kThreads)
    AddFixedPointKernel(const float* a, const long long* b, float* y, int64_t n) {
  const double unit = 1.0 / static_cast<double>(1ll << kFixedPointShift);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    y[i] = static_cast<float>(static_cast<double>(a[i]) + static_cast<double>(b[i]) * unit);
  }
}

}  // namespace

absl::Status AddFixedPoint(const AddFixedPointParams& p, const Stream& stream) {
  if (p.n < 0) return absl::InvalidArgumentError("AddFixedPoint: negative n");
  if (p.n == 0) return absl::OkStatus();
  if (p.a == nullptr || p.b == nullptr || p.y == nullptr)
    return absl::InvalidArgumentError("AddFixedPoint: null pointer");
  const int blocks = static_cast<int>(std::min<int64_t>((p.n + kThreads - 1) / kThreads, 65536));
  AddFixedPointKernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream.cuda_stream)>>>(
      p.a, reinterpret_cast<const long long*>(p.b), p.y, p.n);
  return LaunchStatus("AddFixedPointKernel");
}

absl::Status Add(const AddParams& p, const Stream& stream) {
  if (p.n < 0) return absl::InvalidArgumentError("Add: negative n");
  if (p.n == 0) return absl::OkStatus();
  if (p.a == nullptr || p.b == nullptr || p.y == nullptr)
    return absl::InvalidArgumentError("Add: null pointer");
  const int blocks = static_cast<int>(std::min<int64_t>((p.n + kThreads - 1) / kThreads, 65536));
  LaunchKernel("AddKernel", AddKernel, blocks, kThreads, 0, ForLaunch(stream), p.a, p.b, p.y, p.n);
  return LaunchStatus("AddKernel");
}

}  // namespace tpserve::kernels::cuda
