// cuda::KvCacheWrite: one block per token copies its K and V rows (all KV
// heads) into the token's slot, rounded to bf16 for a bf16 cache (StoreKv,
// the CPU backend's rounding). Slots outside the pool are skipped: the
// device cannot report them, so the engine validates slot mappings on the host
// (the CPU backend rejects them with InvalidArgument).
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/paged_kv.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kThreads = 128;

template <typename KvT>
__global__ void __launch_bounds__(kThreads)
    KvCacheWriteKernel(const float* __restrict__ k, const float* __restrict__ v,
                       KvT* __restrict__ k_cache, KvT* __restrict__ v_cache,
                       const int64_t* __restrict__ slots, int width, int64_t num_slots,
                       int64_t k_stride, int64_t v_stride) {
  const int t = blockIdx.x;
  const int64_t slot = slots[t];
  if (slot < 0 || slot >= num_slots) return;
  const float* ks = k + t * k_stride;
  const float* vs = v + t * v_stride;
  KvT* kd = k_cache + slot * width;
  KvT* vd = v_cache + slot * width;
  for (int i = threadIdx.x; i < width; i += kThreads) {
    StoreKv(kd + i, ks[i]);
    StoreKv(vd + i, vs[i]);
  }
}

}  // namespace

absl::Status KvCacheWrite(const KvCacheWriteParams& p, const Stream& stream) {
  if (p.tokens < 0 || p.n_kv_heads <= 0 || p.head_dim <= 0 || p.block_size <= 0 ||
      p.num_blocks < 0) {
    return absl::InvalidArgumentError("KvCacheWrite: bad shape");
  }
  if (p.tokens == 0) return absl::OkStatus();
  if (p.k == nullptr || p.v == nullptr || p.k_cache == nullptr || p.v_cache == nullptr ||
      p.slot_mapping == nullptr) {
    return absl::InvalidArgumentError("KvCacheWrite: null pointer");
  }
  const int width = p.n_kv_heads * p.head_dim;
  const int64_t ks = p.k_stride == 0 ? width : p.k_stride;
  const int64_t vs = p.v_stride == 0 ? width : p.v_stride;
  const int64_t num_slots = static_cast<int64_t>(p.num_blocks) * p.block_size;
  cudaStream_t s = static_cast<cudaStream_t>(stream.cuda_stream);
  TPS_KV_DTYPE_SWITCH(p.kv_dtype, KvT, {
    KvCacheWriteKernel<KvT><<<p.tokens, kThreads, 0, s>>>(p.k, p.v, static_cast<KvT*>(p.k_cache),
                                                          static_cast<KvT*>(p.v_cache),
                                                          p.slot_mapping, width, num_slots, ks, vs);
    return LaunchStatus("KvCacheWriteKernel");
  });
}

}  // namespace tpserve::kernels::cuda
