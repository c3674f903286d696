// cuda::PagedAttention: flash-style causal attention over the paged KV cache
// for any mix of prefill chunks and decode tokens (GQA, f32 math on CUDA
// cores; the cache in f32 or bf16, widened as it enters shared memory).
//
// Grid (query head, sequence, kTileSlots); a block of 4 warps owns query
// tiles of kQueryTile rows of one sequence and head, taking tiles z, z +
// kTileSlots, ... so the grid needs no host knowledge of query lengths. For
// each tile it streams keys in tiles of kKeyTile tokens through shared memory
// (each K/V tile is reused by all kQueryTile queries) and keeps an online
// softmax per query row in registers: lane j scores key j, lanes then own
// head dims d = lane + 32 i for the PV accumulation.
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/paged_kv.cuh"
#include "kernels/cuda/quant.cuh"
#include "kernels/cuda/shared_memory.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 4;
constexpr int kQueryTile = kWarps * kRowsPerWarp;
constexpr int kKeyTile = 32;  // one key per lane when scoring
constexpr int kTileSlots = 16;
static_assert(kKeyTile == 32, "scoring maps one key to each lane");

// Shared memory: q tile (kQueryTile x head_dim), K tile (kKeyTile x (head_dim
// + 1), padded so lane j reading row j is conflict-free), V tile (kKeyTile x
// head_dim), key validity.
size_t SharedBytes(int head_dim) {
  return sizeof(float) * (static_cast<size_t>(kQueryTile) * head_dim +
                          static_cast<size_t>(kKeyTile) * (head_dim + 1) +
                          static_cast<size_t>(kKeyTile) * head_dim + kKeyTile);
}

template <int kDimsPerLane, typename KvT>
__global__ void __launch_bounds__(kWarps * 32) FlashPagedAttentionKernel(AttentionArgs<KvT> a) {
  float* smem = DynamicSharedMemory<float>();
  const int hd = a.kv.head_dim;
  float* sq = smem;                      // [kQueryTile][hd]
  float* sk = sq + kQueryTile * hd;      // [kKeyTile][hd + 1]
  float* sv = sk + kKeyTile * (hd + 1);  // [kKeyTile][hd]
  float* svalid = sv + kKeyTile * hd;    // [kKeyTile] 1 = readable

  const int head = blockIdx.x;  // fastest: GQA heads sharing K/V run side by side
  const int seq = blockIdx.y;
  const int kv_head = head / a.group;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int q_begin = a.cu_q_lens[seq];
  const int q_len = a.cu_q_lens[seq + 1] - q_begin;
  const int pos0 = a.start_pos[seq];
  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.kv.max_blocks_per_seq;

  for (int tile = blockIdx.z; tile * kQueryTile < q_len; tile += gridDim.z) {
    const int tile_q0 = tile * kQueryTile;
    const int tile_rows = min(kQueryTile, q_len - tile_q0);
    __syncthreads();  // previous tile finished with sq
    for (int i = threadIdx.x; i < kQueryTile * hd; i += kWarps * 32) {
      const int r = i / hd;
      const int d = i % hd;
      sq[i] =
          r < tile_rows
              ? a.q[(q_begin + tile_q0 + r) * a.q_stride + static_cast<int64_t>(head) * hd + d] *
                    a.scale
              : 0.0f;
    }
    float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDimsPerLane];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      m[r] = -INFINITY;
      l[r] = 0.0f;
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) acc[r][i] = 0.0f;
    }
    // Keys needed by the last row of the tile: positions [0, pos0 + tile_q0 + tile_rows - 1].
    const int key_end = pos0 + tile_q0 + tile_rows;
    for (int key0 = 0; key0 < key_end; key0 += kKeyTile) {
      __syncthreads();  // previous key tile consumed (and sq written, first time)
      for (int i = threadIdx.x; i < kKeyTile * hd; i += kWarps * 32) {
        const int j = i / hd;
        const int d = i % hd;
        const int pos = key0 + j;
        const int64_t off = pos < key_end ? a.kv.Offset(table, pos, kv_head) : -1;
        sk[j * (hd + 1) + d] = off >= 0 ? LoadKv(a.kv.k_cache + off + d) : 0.0f;
        sv[j * hd + d] = off >= 0 ? LoadKv(a.kv.v_cache + off + d) : 0.0f;
        if (d == 0) svalid[j] = off >= 0 ? 1.0f : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const int row = warp * kRowsPerWarp + r;
        if (row >= tile_rows) continue;  // warp-uniform
        const int qpos = pos0 + tile_q0 + row;
        if (key0 > qpos) continue;  // warp-uniform: the whole key tile is in the future
        const float* qrow = sq + row * hd;
        const float* krow = sk + lane * (hd + 1);
        float s = 0.0f;
        for (int d = 0; d < hd; ++d) s = fmaf(qrow[d], krow[d], s);
        const bool visible = key0 + lane <= qpos && svalid[lane] != 0.0f;
        s = visible ? s : -INFINITY;
        const float m_new = fmaxf(m[r], WarpMax(s));
        if (m_new == -INFINITY) continue;  // warp-uniform: nothing visible yet
        const float p = visible ? expf(s - m_new) : 0.0f;
        const float corr = expf(m[r] - m_new);  // 0 when m[r] is -inf
        l[r] = l[r] * corr + WarpSum(p);
        m[r] = m_new;
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) acc[r][i] *= corr;
        for (int j = 0; j < kKeyTile; ++j) {
          const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
          for (int i = 0; i < kDimsPerLane; ++i) {
            const int d = lane + 32 * i;
            if (d < hd) acc[r][i] = fmaf(pj, sv[j * hd + d], acc[r][i]);
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int row = warp * kRowsPerWarp + r;
      if (row >= tile_rows) continue;
      const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
      const int64_t o = (static_cast<int64_t>(q_begin + tile_q0 + row) * a.n_heads + head) * hd;
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d >= hd) continue;
        const float v = acc[r][i] * inv;
        if (a.out16 != nullptr) {
          a.out16[o + d] = Bf16Bits(v);
        } else {
          a.out[o + d] = v;
        }
      }
    }
  }
}

template <int kDimsPerLane, typename KvT>
absl::Status LaunchFlash(const AttentionArgs<KvT>& a, int num_seqs, cudaStream_t s) {
  const size_t smem = SharedBytes(a.kv.head_dim);
  if (smem > 48 * 1024) {
    TPS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(FlashPagedAttentionKernel<kDimsPerLane, KvT>,
                                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                  static_cast<int>(smem)));
  }
  const dim3 grid(a.n_heads, num_seqs, kTileSlots);
  FlashPagedAttentionKernel<kDimsPerLane, KvT><<<grid, kWarps * 32, smem, s>>>(a);
  return LaunchStatus("FlashPagedAttentionKernel");
}

}  // namespace

absl::Status LaunchPagedAttention(const PagedAttentionParams& p, uint16_t* out16, cudaStream_t s) {
  TPS_KV_DTYPE_SWITCH(p.kv_dtype, KvT, {
    AttentionArgs<KvT> a = MakeAttentionArgs<KvT>(p);
    a.out16 = out16;
    TPS_HEAD_DIM_SWITCH(p.head_dim, kDimsPerLane,
                        { return LaunchFlash<kDimsPerLane, KvT>(a, p.num_seqs, s); });
  });
}

absl::Status PagedAttention(const PagedAttentionParams& p, const Stream& stream) {
  if (const char* err = CheckAttentionShape(p)) return absl::InvalidArgumentError(err);
  if (p.num_seqs == 0) return absl::OkStatus();
  return LaunchPagedAttention(p, nullptr, static_cast<cudaStream_t>(stream.cuda_stream));
}

}  // namespace tpserve::kernels::cuda
