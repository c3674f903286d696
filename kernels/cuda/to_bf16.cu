// cuda::ToBf16: rows of any dtype.h type to dense bf16 (round to nearest
// even), one 128-thread block per row.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/quant.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kThreads = 128;

template <DType kType>
__global__ void __launch_bounds__(kThreads)
    ToBf16Kernel(const char* __restrict__ src, uint16_t* __restrict__ dst, int cols,
                 int64_t src_row_bytes) {
  const void* row = src + blockIdx.x * src_row_bytes;
  uint16_t* d = dst + static_cast<int64_t>(blockIdx.x) * cols;
  if constexpr (IsQuantized(kType)) {
    for (int b = threadIdx.x; b < cols / 32; b += kThreads) {
      float v[32];
      LoadBlock32<kType>(row, b, v);
#pragma unroll
      for (int i = 0; i < 32; ++i) d[b * 32 + i] = Bf16Bits(v[i]);
    }
  } else {
    for (int i = threadIdx.x; i < cols; i += kThreads) d[i] = Bf16Bits(LoadElement<kType>(row, i));
  }
}

template <DType kType>
absl::Status LaunchToBf16(const ToBf16Params& p, int64_t row_bytes, cudaStream_t s) {
  ToBf16Kernel<kType>
      <<<p.rows, kThreads, 0, s>>>(static_cast<const char*>(p.src), p.dst, p.cols, row_bytes);
  return LaunchStatus("ToBf16Kernel");
}

}  // namespace

absl::Status ToBf16(const ToBf16Params& p, const Stream& stream) {
  if (p.rows < 0 || p.cols < 0) return absl::InvalidArgumentError("ToBf16: negative shape");
  const int64_t dense = RowBytes(p.dtype, p.cols);
  if (dense < 0)
    return absl::InvalidArgumentError("ToBf16: cols must be a multiple of 32 for a quantized type");
  if (p.rows == 0 || p.cols == 0) return absl::OkStatus();
  if (p.src == nullptr || p.dst == nullptr)
    return absl::InvalidArgumentError("ToBf16: null pointer");
  const int64_t row_bytes = p.src_row_bytes == 0 ? dense : p.src_row_bytes;
  if (row_bytes < dense)
    return absl::InvalidArgumentError("ToBf16: src_row_bytes below the row size");
  cudaStream_t s = static_cast<cudaStream_t>(stream.cuda_stream);
  TPS_WEIGHT_DTYPE_SWITCH(p.dtype, kType, { return LaunchToBf16<kType>(p, row_bytes, s); });
}

}  // namespace tpserve::kernels::cuda
