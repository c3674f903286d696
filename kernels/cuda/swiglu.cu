// cuda::Swiglu: out = silu(gate) * up, one thread per element (grid-stride).
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    SwigluKernel(const float* gate, const float* up, float* out, int rows, int dim,
                 int64_t gate_stride, int64_t up_stride) {
  const int64_t total = static_cast<int64_t>(rows) * dim;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t r = i / dim;
    const int64_t c = i % dim;
    const float g = gate[r * gate_stride + c];
    const float u = up[r * up_stride + c];
    out[i] = SiluMul(g, u);
  }
}

}  // namespace

absl::Status Swiglu(const SwigluParams& p, const Stream& stream) {
  if (p.rows < 0 || p.dim < 0) return absl::InvalidArgumentError("Swiglu: negative shape");
  if (p.rows == 0 || p.dim == 0) return absl::OkStatus();
  if (p.gate == nullptr || p.up == nullptr || p.out == nullptr) {
    return absl::InvalidArgumentError("Swiglu: null pointer");
  }
  const int64_t gs = p.gate_stride == 0 ? p.dim : p.gate_stride;
  const int64_t us = p.up_stride == 0 ? p.dim : p.up_stride;
  if (gs < p.dim || us < p.dim) return absl::InvalidArgumentError("Swiglu: stride below dim");
  const int64_t total = static_cast<int64_t>(p.rows) * p.dim;
  const int blocks = static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65536));
  SwigluKernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream.cuda_stream)>>>(
      p.gate, p.up, p.out, p.rows, p.dim, gs, us);
  return LaunchStatus("SwigluKernel");
}

}  // namespace tpserve::kernels::cuda
