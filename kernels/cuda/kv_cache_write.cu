// cuda::KvCacheWrite: one block per token copies its K and V rows (all KV
// heads) into the token's slot. Slots outside the pool are skipped: the
// device cannot report them, so the engine validates slot mappings on the host
// (the CPU backend rejects them with InvalidArgument).
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kThreads = 128;

__global__ void __launch_bounds__(kThreads)
    KvCacheWriteKernel(const float* __restrict__ k, const float* __restrict__ v,
                       float* __restrict__ k_cache, float* __restrict__ v_cache,
                       const int64_t* __restrict__ slots, int width, int64_t num_slots,
                       int64_t k_stride, int64_t v_stride) {
  const int t = blockIdx.x;
  const int64_t slot = slots[t];
  if (slot < 0 || slot >= num_slots) return;
  const float* ks = k + t * k_stride;
  const float* vs = v + t * v_stride;
  float* kd = k_cache + slot * width;
  float* vd = v_cache + slot * width;
  for (int i = threadIdx.x; i < width; i += kThreads) {
    kd[i] = ks[i];
    vd[i] = vs[i];
  }
}

}  // namespace

absl::Status KvCacheWrite(const KvCacheWriteParams& p, const Stream& stream) {
  if (p.tokens < 0 || p.n_kv_heads <= 0 || p.head_dim <= 0 || p.block_size <= 0 ||
      p.num_blocks < 0) {
    return absl::InvalidArgumentError("KvCacheWrite: bad shape");
  }
  if (p.kv_dtype != DType::kF32) {
    return absl::InvalidArgumentError("KvCacheWrite: the CUDA backend writes an f32 KV cache only");
  }
  if (p.tokens == 0) return absl::OkStatus();
  if (p.k == nullptr || p.v == nullptr || p.k_cache == nullptr || p.v_cache == nullptr ||
      p.slot_mapping == nullptr) {
    return absl::InvalidArgumentError("KvCacheWrite: null pointer");
  }
  const int width = p.n_kv_heads * p.head_dim;
  const int64_t ks = p.k_stride == 0 ? width : p.k_stride;
  const int64_t vs = p.v_stride == 0 ? width : p.v_stride;
  KvCacheWriteKernel<<<p.tokens, kThreads, 0, static_cast<cudaStream_t>(stream.cuda_stream)>>>(
      p.k, p.v, static_cast<float*>(p.k_cache), static_cast<float*>(p.v_cache), p.slot_mapping, width,
      static_cast<int64_t>(p.num_blocks) * p.block_size, ks, vs);
  return LaunchStatus("KvCacheWriteKernel");
}

}  // namespace tpserve::kernels::cuda
