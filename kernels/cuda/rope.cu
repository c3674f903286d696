// cuda::Rope: one thread per rotated pair, q heads first then k heads; and
// cuda::RopeKvWrite, the same rotation fused with the KV-cache write.
// Angles are evaluated in double precision like the CPU backend, so positions
// in the 100k range keep ~1e-6 accuracy.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/paged_kv.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/shared_memory.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) RopeKernel(RopeArgs a) {
  const int half = a.head_dim / 2;
  const int heads = a.n_heads + (a.k != nullptr ? a.n_kv_heads : 0);
  const int64_t total = static_cast<int64_t>(a.tokens) * heads * half;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (idx >= total) return;
  const int pair = static_cast<int>(idx % half);
  const int head = static_cast<int>((idx / half) % heads);
  const int t = static_cast<int>(idx / (static_cast<int64_t>(half) * heads));
  float* base = head < a.n_heads
                    ? a.q + t * a.q_stride + static_cast<int64_t>(head) * a.head_dim
                    : a.k + t * a.k_stride + static_cast<int64_t>(head - a.n_heads) * a.head_dim;
  double s, c;
  sincos(static_cast<double>(a.positions[t]) * InvFreq(a, pair), &s, &c);
  RotatePair(a, base, pair, s, c);
}

// Where RopeKvWriteKernel copies the rotated k and the v of each token.
template <typename KvT>
struct CacheArgs {
  const float* v;
  KvT* k_cache;
  KvT* v_cache;
  const int64_t* slots;
  int64_t v_stride;
  int64_t num_slots;
};

// Largest head_dim RopeKvWrite takes: its angles live in shared memory
// (dynamic: 2 x head_dim/2 doubles; emulated builds would keep a static array
// in thread-local storage once per KV dtype, docs/cuda_emulator.md).
constexpr int kMaxRopeKvHalf = 256;

// One block per token: the token's angles once per pair into shared memory
// (the same double-precision sincos as RopeKernel), then every (head, pair)
// of its q and k heads rotated by its own thread, then the rotated k row and
// the v row copied into the token's cache slot as by KvCacheWriteKernel
// (slots outside the pool skipped; StoreKv rounds for a bf16 cache).
template <typename KvT>
__global__ void __launch_bounds__(kThreads) RopeKvWriteKernel(RopeArgs a, CacheArgs<KvT> c) {
  const int t = blockIdx.x;
  const int half = a.head_dim / 2;
  double* sin_s = DynamicSharedMemory<double>();  // [half]
  double* cos_s = sin_s + half;                   // [half]
  float* q = a.q + t * a.q_stride;
  float* k = a.k + t * a.k_stride;
  for (int pair = threadIdx.x; pair < half; pair += kThreads) {
    sincos(static_cast<double>(a.positions[t]) * InvFreq(a, pair), &sin_s[pair], &cos_s[pair]);
  }
  __syncthreads();  // every angle of the token is in shared memory
  const int rotations = (a.n_heads + a.n_kv_heads) * half;
  for (int i = threadIdx.x; i < rotations; i += kThreads) {
    const int head = i / half;
    const int pair = i % half;
    float* base = head < a.n_heads ? q + static_cast<int64_t>(head) * a.head_dim
                                   : k + static_cast<int64_t>(head - a.n_heads) * a.head_dim;
    RotatePair(a, base, pair, sin_s[pair], cos_s[pair]);
  }
  __syncthreads();  // the rotated k row is complete
  const int64_t slot = c.slots[t];
  if (slot < 0 || slot >= c.num_slots) return;
  const int width = a.n_kv_heads * a.head_dim;
  const float* vs = c.v + t * c.v_stride;
  KvT* kd = c.k_cache + slot * width;
  KvT* vd = c.v_cache + slot * width;
  for (int i = threadIdx.x; i < width; i += kThreads) {
    StoreKv(kd + i, k[i]);
    StoreKv(vd + i, vs[i]);
  }
}

}  // namespace

absl::Status Rope(const RopeParams& p, const Stream& stream) {
  if (absl::Status st = CheckRope(p); !st.ok()) return st;
  if (p.tokens == 0) return absl::OkStatus();
  const RopeArgs a = MakeRopeArgs(p);
  const int heads = p.n_heads + (p.k != nullptr ? p.n_kv_heads : 0);
  const int64_t total = static_cast<int64_t>(p.tokens) * heads * (p.head_dim / 2);
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > 2147483647) return absl::InvalidArgumentError("Rope: too many elements");
  RopeKernel<<<static_cast<unsigned>(blocks), kThreads, 0,
               static_cast<cudaStream_t>(stream.cuda_stream)>>>(a);
  return LaunchStatus("RopeKernel");
}

absl::Status RopeKvWrite(const RopeParams& rope, const KvCacheWriteParams& kv,
                         const Stream& stream) {
  if (absl::Status st = CheckRopeKvWrite(rope, kv); !st.ok()) return st;
  if (rope.head_dim / 2 > kMaxRopeKvHalf) {
    return absl::InvalidArgumentError(
        "RopeKvWrite: head_dim above 512 is not supported (its angles live in shared memory); "
        "use Rope then KvCacheWrite");
  }
  if (rope.tokens == 0) return absl::OkStatus();
  const RopeArgs a = MakeRopeArgs(rope);
  const int64_t v_stride = RowStride(kv.v_stride, kv.n_kv_heads, kv.head_dim);
  const int64_t num_slots = static_cast<int64_t>(kv.num_blocks) * kv.block_size;
  cudaStream_t s = static_cast<cudaStream_t>(stream.cuda_stream);
  TPS_KV_DTYPE_SWITCH(kv.kv_dtype, KvT, {
    const CacheArgs<KvT> c{kv.v,
                           static_cast<KvT*>(kv.k_cache),
                           static_cast<KvT*>(kv.v_cache),
                           kv.slot_mapping,
                           v_stride,
                           num_slots};
    const size_t smem = sizeof(double) * 2 * (rope.head_dim / 2);
    RopeKvWriteKernel<KvT><<<rope.tokens, kThreads, smem, s>>>(a, c);
    return LaunchStatus("RopeKvWriteKernel");
  });
}

}  // namespace tpserve::kernels::cuda
