// cuda::Argmax: greedy sampling, one 256-thread block per logits row. Ties go
// to the lowest index (as the CPU sampler); NaNs never win.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// (value, index) order: larger value first, then smaller index.
__device__ __forceinline__ bool Better(float v, int i, float bv, int bi) {
  return v > bv || (v == bv && i < bi);
}

__global__ void __launch_bounds__(kThreads)
    ArgmaxKernel(const float* logits, int32_t* ids, int vocab, int64_t stride) {
  __shared__ float s_val[kThreads / 32];
  __shared__ int s_idx[kThreads / 32];
  const float* row = logits + blockIdx.x * stride;
  float best = -INFINITY;
  int best_i = vocab;  // sentinel: loses every tie
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const float v = row[i];
    if (Better(v, i, best, best_i)) {  // false for NaN
      best = v;
      best_i = i;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_xor_sync(0xffffffffu, best, o);
    const int i = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (Better(v, i, best, best_i)) {
      best = v;
      best_i = i;
    }
  }
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) {
    s_val[warp] = best;
    s_idx[warp] = best_i;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) {
      if (Better(s_val[w], s_idx[w], best, best_i)) {
        best = s_val[w];
        best_i = s_idx[w];
      }
    }
    ids[blockIdx.x] = best_i < vocab ? best_i : 0;  // all-NaN or all -inf row: token 0
  }
}

}  // namespace

absl::Status Argmax(const ArgmaxParams& p, const Stream& stream) {
  if (p.rows < 0 || p.vocab <= 0) return absl::InvalidArgumentError("Argmax: bad shape");
  if (p.rows == 0) return absl::OkStatus();
  if (p.logits == nullptr || p.ids == nullptr)
    return absl::InvalidArgumentError("Argmax: null pointer");
  const int64_t stride = p.stride == 0 ? p.vocab : p.stride;
  ArgmaxKernel<<<p.rows, kThreads, 0, static_cast<cudaStream_t>(stream.cuda_stream)>>>(
      p.logits, p.ids, p.vocab, stride);
  return LaunchStatus("ArgmaxKernel");
}

}  // namespace tpserve::kernels::cuda
