// cuda::Swiglu: out = silu(gate) * up, one thread per element (grid-stride);
// with a Bf16Copy, out as GemmViaBf16's bf16 copy instead.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/quant.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    SwigluKernel(const float* gate, const float* up, float* out, uint16_t* out16, int rows, int dim,
                 int width, int64_t gate_stride, int64_t up_stride) {
  // Element i of rows of `width` values: dim for f32 out, the copy's row
  // length for out16 (zero past dim).
  const int64_t total = static_cast<int64_t>(rows) * width;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t r = i / width;
    const int64_t c = i % width;
    if (c >= dim) {
      out16[i] = 0;
      continue;
    }
    const float v = SiluMul(gate[r * gate_stride + c], up[r * up_stride + c]);
    if (out16 != nullptr) {
      out16[i] = Bf16Bits(v);
    } else {
      out[i] = v;
    }
  }
}

}  // namespace

absl::Status Swiglu(const SwigluParams& p, const Stream& stream, const Bf16Copy& copy) {
  if (p.rows < 0 || p.dim < 0) return absl::InvalidArgumentError("Swiglu: negative shape");
  if (p.rows == 0 || p.dim == 0) return absl::OkStatus();
  if (p.gate == nullptr || p.up == nullptr || (p.out == nullptr && copy.data == nullptr)) {
    return absl::InvalidArgumentError("Swiglu: null pointer");
  }
  const int64_t gs = p.gate_stride == 0 ? p.dim : p.gate_stride;
  const int64_t us = p.up_stride == 0 ? p.dim : p.up_stride;
  if (gs < p.dim || us < p.dim) return absl::InvalidArgumentError("Swiglu: stride below dim");
  const int width = copy.data != nullptr ? static_cast<int>(GemmViaBf16RowElems(p.dim)) : p.dim;
  const int64_t total = static_cast<int64_t>(p.rows) * width;
  const int blocks = static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65536));
  SwigluKernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream.cuda_stream)>>>(
      p.gate, p.up, p.out, copy.data, p.rows, p.dim, width, gs, us);
  return LaunchStatus("SwigluKernel");
}

}  // namespace tpserve::kernels::cuda
