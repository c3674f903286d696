// cuda::Embedding: one 128-thread block per token; threads stride over the
// row's 32-value blocks (quantized tables) or elements. Tokens outside this
// shard's rows [row_offset, row_offset + rows) give a zero row.
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
    EmbeddingKernel(const void* __restrict__ table, const int32_t* __restrict__ tokens,
                    float* __restrict__ out, int dim, int rows, int row_offset) {
  const int t = blockIdx.x;
  float* o = out + static_cast<int64_t>(t) * dim;
  const int64_t r = static_cast<int64_t>(tokens[t]) - row_offset;
  if (r < 0 || r >= rows) {
    for (int i = threadIdx.x; i < dim; i += kThreads) o[i] = 0.0f;
    return;
  }
  const void* row = RowPointer(table, kType, dim, r);
  if constexpr (IsQuantized(kType)) {
    for (int b = threadIdx.x; b < dim / 32; b += kThreads) {
      float v[32];
      LoadBlock32<kType>(row, b, v);
#pragma unroll
      for (int i = 0; i < 32; ++i) o[b * 32 + i] = v[i] + 0.0f;  // -0 -> +0 (ops.h)
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += kThreads) o[i] = LoadElement<kType>(row, i) + 0.0f;
  }
}

template <DType kType>
absl::Status LaunchEmbedding(const EmbeddingParams& p, cudaStream_t s) {
  EmbeddingKernel<kType>
      <<<p.num_tokens, kThreads, 0, s>>>(p.table, p.tokens, p.out, p.dim, p.rows, p.row_offset);
  return LaunchStatus("EmbeddingKernel");
}

}  // namespace

absl::Status Embedding(const EmbeddingParams& p, const Stream& stream) {
  if (p.num_tokens < 0 || p.dim <= 0 || p.rows < 0)
    return absl::InvalidArgumentError("Embedding: bad shape");
  if (RowBytes(p.dtype, p.dim) < 0) {
    return absl::InvalidArgumentError(
        "Embedding: dim must be a multiple of 32 for a quantized table");
  }
  if (p.num_tokens == 0) return absl::OkStatus();
  if (p.table == nullptr || p.tokens == nullptr || p.out == nullptr) {
    return absl::InvalidArgumentError("Embedding: null pointer");
  }
  cudaStream_t s = static_cast<cudaStream_t>(stream.cuda_stream);
  TPS_WEIGHT_DTYPE_SWITCH(p.dtype, kType, { return LaunchEmbedding<kType>(p, s); });
}

}  // namespace tpserve::kernels::cuda
