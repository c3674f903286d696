// Device-side view of the paged KV cache of kernels/ops.h:
// cache[num_blocks][block_size][n_kv_heads][head_dim] of KvT, sequence
// positions mapped to blocks through a block table row. KvT is the element
// type: float (kv_dtype kF32) or uint16_t bf16 bits (kBF16). Kernels are
// templated on it and read through LoadKv / LoadKvRun, which widen to f32
// exactly, and write through StoreKv, which rounds as the CPU backend does
// (formats/dtype.h F32ToBF16), so both backends' caches hold the same bits.
//
//   TPS_KV_DTYPE_SWITCH(p.kv_dtype, KvT, { return Launch<KvT>(MakeAttentionArgs<KvT>(p)); });
//   ...
//   const int64_t off = a.kv.Offset(table_row, pos, kv_head);  // -1 if the block id is bad
//   const float k0 = LoadKv(a.kv.k_cache + off);
#ifndef TPSERVE_KERNELS_CUDA_PAGED_KV_CUH_
#define TPSERVE_KERNELS_CUDA_PAGED_KV_CUH_

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "absl/status/status.h"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/ops.h"

namespace tpserve::kernels::cuda {

template <typename KvT>
inline constexpr bool kIsKvType = std::is_same_v<KvT, float> || std::is_same_v<KvT, uint16_t>;

__device__ __forceinline__ float LoadKv(const float* p) { return *p; }
__device__ __forceinline__ float LoadKv(const uint16_t* p) {
  return __uint_as_float(static_cast<uint32_t>(*p) << 16);
}

// F32ToBF16 of formats/dtype.h on the device: round to nearest even, NaN
// kept quiet (bit 6 of the high half set), so the bits match the CPU cache.
__device__ __forceinline__ uint16_t F32ToBf16Bits(float f) {
  const uint32_t u = __float_as_uint(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((static_cast<uint64_t>(u) + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ void StoreKv(float* p, float x) { *p = x; }
__device__ __forceinline__ void StoreKv(uint16_t* p, float x) { *p = F32ToBf16Bits(x); }

// x as StoreKv then LoadKv would give it back: x itself for an f32 cache,
// rounded to bf16 and widened for a bf16 one.
template <typename KvT>
__device__ __forceinline__ float RoundToKv(float x) {
  KvT stored;
  StoreKv(&stored, x);
  return LoadKv(&stored);
}

// kN consecutive elements from p into out[0, kN), widened to f32, as one
// vector load (16 bytes for 8 bf16 values). p must be aligned to
// kN * sizeof(KvT): true for a head row's element d0 when head_dim and d0
// are multiples of kN (cudaMalloc bases are 256-byte aligned).
template <int kN, typename KvT>
__device__ __forceinline__ void LoadKvRun(const KvT* p, float (&out)[kN]) {
  struct alignas(kN * sizeof(KvT)) Run {
    KvT v[kN];
  };
  const Run r = *reinterpret_cast<const Run*>(p);
#pragma unroll
  for (int i = 0; i < kN; ++i) out[i] = LoadKv(&r.v[i]);
}

template <typename KvT>
struct PagedKv {
  static_assert(kIsKvType<KvT>, "KV elements are float or bf16 bits (uint16_t)");
  const KvT* k_cache;
  const KvT* v_cache;
  int block_size;
  int num_blocks;
  int n_kv_heads;
  int head_dim;
  int max_blocks_per_seq;

  // Offset of (pos, kv_head) in elements, or -1 when the block id is out of
  // the pool (such tokens are masked out rather than read).
  __device__ __forceinline__ int64_t Offset(const int32_t* table_row, int pos, int kv_head) const {
    const int table_index = pos / block_size;
    if (table_index >= max_blocks_per_seq) return -1;
    const int32_t block = table_row[table_index];
    if (block < 0 || block >= num_blocks) return -1;
    const int64_t slot = static_cast<int64_t>(block) * block_size + pos % block_size;
    return (slot * n_kv_heads + kv_head) * head_dim;
  }
};

template <typename KvT>
PagedKv<KvT> MakePagedKv(const PagedAttentionParams& p) {
  return PagedKv<KvT>{static_cast<const KvT*>(p.k_cache),
                      static_cast<const KvT*>(p.v_cache),
                      p.block_size,
                      p.num_blocks,
                      p.n_kv_heads,
                      p.head_dim,
                      p.max_blocks_per_seq};
}

// What the attention kernels take.
template <typename KvT>
struct AttentionArgs {
  const float* q;
  float* out;
  const int32_t* block_tables;
  const int32_t* cu_q_lens;
  const int32_t* start_pos;
  PagedKv<KvT> kv;
  int n_heads;
  int group;  // n_heads / n_kv_heads
  int64_t q_stride;
  float scale;
  // Set (prefill kernels): the output as bf16 at the same index instead of
  // f32, rounded to nearest even (GemmViaBf16's copy of it, Bf16Copy).
  uint16_t* out16 = nullptr;
};

template <typename KvT>
AttentionArgs<KvT> MakeAttentionArgs(const PagedAttentionParams& p) {
  return AttentionArgs<KvT>{
      p.q,
      p.out,
      p.block_tables,
      p.cu_q_lens,
      p.start_pos,
      MakePagedKv<KvT>(p),
      p.n_heads,
      p.n_heads / p.n_kv_heads,
      p.q_stride == 0 ? static_cast<int64_t>(p.n_heads) * p.head_dim : p.q_stride,
      p.scale};
}

// Host-side shape checks shared by the attention launchers (the dtype is
// checked where they dispatch on it, TPS_KV_DTYPE_SWITCH).
inline const char* CheckAttentionShape(const PagedAttentionParams& p) {
  if (p.num_seqs < 0 || p.n_heads <= 0 || p.n_kv_heads <= 0 || p.head_dim <= 0 ||
      p.block_size <= 0 || p.max_blocks_per_seq < 0 || p.num_blocks < 0) {
    return "PagedAttention: bad shape";
  }
  if (p.n_heads % p.n_kv_heads != 0)
    return "PagedAttention: n_heads must be a multiple of n_kv_heads";
  if (p.num_seqs > 0 &&
      (p.q == nullptr || p.k_cache == nullptr || p.v_cache == nullptr || p.out == nullptr ||
       p.block_tables == nullptr || p.cu_q_lens == nullptr || p.start_pos == nullptr)) {
    return "PagedAttention: null pointer";
  }
  if (p.num_seqs > 65535) return "PagedAttention: more than 65535 sequences in one launch";
  if (p.n_heads > 65535) return "PagedAttention: too many heads";
  return nullptr;
}

// The f32 flash kernel (paged_attention.cu) on checked params: PagedAttention,
// or with out16 set its output as bf16 there instead (PagedAttentionPrefill's
// copy at head dims its tensor-core kernel lacks).
absl::Status LaunchPagedAttention(const PagedAttentionParams& p, uint16_t* out16, cudaStream_t s);

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_PAGED_KV_CUH_
