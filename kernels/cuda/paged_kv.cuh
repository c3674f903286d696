// Device-side view of the paged KV cache of kernels/ops.h:
// cache[num_blocks][block_size][n_kv_heads][head_dim] f32, sequence positions
// mapped to blocks through a block table row.
//
//   PagedKv kv = MakePagedKv(p);
//   const float* k = kv.KeyRow(table_row, pos, kv_head);  // null if the block id is bad
#ifndef TPSERVE_KERNELS_CUDA_PAGED_KV_CUH_
#define TPSERVE_KERNELS_CUDA_PAGED_KV_CUH_

#include <cstdint>

#include "kernels/ops.h"

namespace tpserve::kernels::cuda {

struct PagedKv {
  const float* k_cache;
  const float* v_cache;
  int block_size;
  int num_blocks;
  int n_kv_heads;
  int head_dim;
  int max_blocks_per_seq;

  // Offset of (pos, kv_head) in floats, or -1 when the block id is out of the
  // pool (such tokens are masked out rather than read).
  __device__ __forceinline__ int64_t Offset(const int32_t* table_row, int pos, int kv_head) const {
    const int table_index = pos / block_size;
    if (table_index >= max_blocks_per_seq) return -1;
    const int32_t block = table_row[table_index];
    if (block < 0 || block >= num_blocks) return -1;
    const int64_t slot = static_cast<int64_t>(block) * block_size + pos % block_size;
    return (slot * n_kv_heads + kv_head) * head_dim;
  }
};

inline PagedKv MakePagedKv(const PagedAttentionParams& p) {
  return PagedKv{static_cast<const float*>(p.k_cache),
                 static_cast<const float*>(p.v_cache),
                 p.block_size,
                 p.num_blocks,
                 p.n_kv_heads,
                 p.head_dim,
                 p.max_blocks_per_seq};
}

// What the prefill attention kernels take (f32 and tensor-core).
struct AttentionArgs {
  const float* q;
  float* out;
  const int32_t* block_tables;
  const int32_t* cu_q_lens;
  const int32_t* start_pos;
  PagedKv kv;
  int n_heads;
  int group;  // n_heads / n_kv_heads
  int64_t q_stride;
  float scale;
};

inline AttentionArgs MakeAttentionArgs(const PagedAttentionParams& p) {
  return AttentionArgs{p.q,
                       p.out,
                       p.block_tables,
                       p.cu_q_lens,
                       p.start_pos,
                       MakePagedKv(p),
                       p.n_heads,
                       p.n_heads / p.n_kv_heads,
                       p.q_stride == 0 ? static_cast<int64_t>(p.n_heads) * p.head_dim : p.q_stride,
                       p.scale};
}

// Host-side shape checks shared by both attention launchers.
inline const char* CheckAttentionShape(const PagedAttentionParams& p) {
  if (p.num_seqs < 0 || p.n_heads <= 0 || p.n_kv_heads <= 0 || p.head_dim <= 0 ||
      p.block_size <= 0 || p.max_blocks_per_seq < 0 || p.num_blocks < 0) {
    return "PagedAttention: bad shape";
  }
  if (p.kv_dtype != DType::kF32)
    return "PagedAttention: the CUDA backend reads an f32 KV cache only";
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

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_PAGED_KV_CUH_
