// cuda::PagedAttentionPrefill: the causal paged attention of PagedAttention
// on tensor cores, FlashAttention-2 style. Q, K, V and the probabilities are
// rounded to bf16 for mma.sync m16n8k16; scores, the online softmax and the
// output accumulate in f32.
//
// Grid (query head, sequence, kTileSlots), as the f32 kernel: a block of 4
// warps takes query tiles of 64 rows (16 per warp) of one sequence and head,
// every kTileSlots-th, in alternating directions (below).
// Per tile, Q fragments stay in registers, and keys stream through shared
// memory in tiles of 64: K and V both as rows, K the B operand of S = Q K^T
// through ldmatrix, V that of O += P V through ldmatrix.trans (which reads
// each 8x8 block column-wise). P goes from the S accumulators straight into A
// fragments (the C layout of two n8 tiles is the A layout of one k16 step).
// Head dims that are multiples of 16 up to 128; others use the f32 kernel.
// An f32 cache is rounded to bf16 as its tiles enter shared memory; a bf16
// cache holds those same bits (StoreKv rounds to nearest even too) and is
// copied in 16 bytes at a time, so both give identical results. A bf16
// cache's tiles are double-buffered: key tile i + 1's cp.async copies are in
// flight while tile i is multiplied (an f32 cache's tiles are converted on
// the way in, so they load, then compute).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/mma_sm80.cuh"
#include "kernels/cuda/paged_kv.cuh"
#include "kernels/cuda/quant.cuh"
#include "kernels/cuda/shared_memory.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kTileQ = 16 * kWarps;
constexpr int kTileK = 64;
constexpr int kTileSlots = 16;
// Row padding in bf16 elements: rows stay 16-byte aligned for ldmatrix and
// successive rows start on different banks.
constexpr int kPad = 8;

constexpr int kThreads = kWarps * 32;

// Key tiles in shared memory at once: two for a bf16 cache (double-buffered
// cp.async), one for an f32 cache.
template <typename KvT>
constexpr int kKvBuffers = std::is_same_v<KvT, uint16_t> ? 2 : 1;

// sq, then per buffer sk and sv (bf16 rows of kHd + kPad), then per buffer
// each key's K/V offset (int64; the bf16 part's size is a multiple of 8 bytes
// since kHd is a multiple of 16).
template <int kHd, typename KvT>
constexpr size_t SharedBytes() {
  return sizeof(uint16_t) * static_cast<size_t>(kTileQ + 2 * kTileK * kKvBuffers<KvT>) *
             (kHd + kPad) +
         sizeof(int64_t) * kTileK * kKvBuffers<KvT>;
}

// soff[j] = the cache offset of key key0 + j, or -1 at or past key_end or in
// a bad block (a block-table read and a division per key, taken once).
template <typename KvT>
__device__ __forceinline__ void KeyOffsets(const PagedKv<KvT>& kv, const int32_t* table,
                                           int kv_head, int key0, int key_end, int64_t* soff) {
  for (int j = threadIdx.x; j < kTileK; j += kThreads) {
    const int pos = key0 + j;
    soff[j] = pos < key_end ? kv.Offset(table, pos, kv_head) : -1;
  }
}

// A bf16 cache's key tile (offsets in soff) into sk and sv by cp.async,
// 16 bytes per copy, consecutive threads along a row; keys with soff -1
// become zero rows. The caller commits and waits.
template <int kHd>
__device__ __forceinline__ void IssueKvTile(const PagedKv<uint16_t>& kv, int ldk,
                                            const int64_t* soff, uint16_t* sk, uint16_t* sv) {
  constexpr int kRuns = kHd / 8;
  for (int i = threadIdx.x; i < kTileK * kRuns; i += kThreads) {
    const int j = i / kRuns;
    const int d0 = (i % kRuns) * 8;
    const int64_t off = soff[j];
    const bool valid = off >= 0;
    CpAsync16(&sk[j * ldk + d0], valid ? kv.k_cache + off + d0 : kv.k_cache, valid);
    CpAsync16(&sv[j * ldk + d0], valid ? kv.v_cache + off + d0 : kv.v_cache, valid);
  }
}

__device__ __forceinline__ uint16_t Bf16(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

// Max (or sum) over the 4 lanes of a quad: the lanes holding one row.
__device__ __forceinline__ float QuadMax(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float QuadSum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Keys [key0, key0 + kTileK) of an f32 cache into shared memory as bf16
// rows, K into sk and V into sv (row stride ldk each; V's B fragments come
// from ldmatrix.trans, so no transpose here); keys at or past key_end, or in
// a bad block, become zero rows with soff -1 (KeyOffsets). Each thread
// converts 4 floats of a K and a V row, consecutive threads along a row, so
// a warp's loads and stores are contiguous runs. The loads go through the
// read-only path (`__ldg`): nothing writes the cache during this kernel. (A
// bf16 cache's tiles come in by cp.async instead: IssueKvTile. Until
// 2026-12-06, V was stored transposed 2 bytes at a time, 16 lanes of a warp
// on one bank: 14 TFLOP/s at 4096 tokens on the 2026-12-05 device run, f32
// cache.)
template <int kHd>
__device__ __forceinline__ void LoadKvTile(const PagedKv<float>& kv, const int32_t* table,
                                           int kv_head, int key0, int key_end, int ldk,
                                           uint16_t* sk, uint16_t* sv, int64_t* soff) {
  KeyOffsets(kv, table, kv_head, key0, key_end, soff);
  __syncthreads();
  constexpr int kRuns = kHd / 4;  // one float4 per load
  static_assert(kHd % 4 == 0, "rows are whole 16-byte loads");
  for (int i = threadIdx.x; i < kTileK * kRuns; i += kThreads) {
    const int j = i / kRuns;
    const int d0 = (i % kRuns) * 4;
    const int64_t off = soff[j];
    float4 kf = {0.0f, 0.0f, 0.0f, 0.0f}, vf = {0.0f, 0.0f, 0.0f, 0.0f};
    if (off >= 0) {
      kf = __ldg(reinterpret_cast<const float4*>(kv.k_cache + off + d0));
      vf = __ldg(reinterpret_cast<const float4*>(kv.v_cache + off + d0));
    }
    *reinterpret_cast<uint2*>(&sk[j * ldk + d0]) =
        uint2{PackBf16(kf.x, kf.y), PackBf16(kf.z, kf.w)};
    *reinterpret_cast<uint2*>(&sv[j * ldk + d0]) =
        uint2{PackBf16(vf.x, vf.y), PackBf16(vf.z, vf.w)};
  }
}

template <int kHd, typename KvT>
__global__ void __launch_bounds__(kThreads) TensorCoreAttentionKernel(AttentionArgs<KvT> a) {
  constexpr int kLdq = kHd + kPad;
  constexpr bool kAsync = kKvBuffers<KvT> == 2;
  constexpr int kTileElems = kTileK * kLdq;
  uint16_t* sq = DynamicSharedMemory<uint16_t>();  // [kTileQ][kLdq]
  uint16_t* sk0 = sq + kTileQ * kLdq;              // [buffers][kTileK][kLdq]
  uint16_t* sv0 = sk0 + kKvBuffers<KvT> * kTileElems;
  int64_t* soff0 =
      reinterpret_cast<int64_t*>(sv0 + kKvBuffers<KvT> * kTileElems);  // [buffers][kTileK]

  const int head = blockIdx.x;
  const int seq = blockIdx.y;
  const int kv_head = head / a.group;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int g = lane >> 2;  // fragment row group
  const int t = lane & 3;   // thread in group
  const int q_begin = a.cu_q_lens[seq];
  const int q_len = a.cu_q_lens[seq + 1] - q_begin;
  const int pos0 = a.start_pos[seq];
  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.kv.max_blocks_per_seq;

  // Causal tiles cost more the later they are: block z takes tile z of even
  // rounds of gridDim.z tiles and tile gridDim.z - 1 - z of odd ones, so the
  // blocks' shares even out (a 4096-token sequence: 64 tiles, every block's
  // 4 tile indices sum to 126; in index order they sum to 96-156).
  const int tiles = (q_len + kTileQ - 1) / kTileQ;
  for (int round = 0; round * static_cast<int>(gridDim.z) < tiles; ++round) {
    const int slot = round % 2 == 0 ? blockIdx.z : gridDim.z - 1 - blockIdx.z;
    const int tile = round * gridDim.z + slot;
    if (tile >= tiles) continue;  // uniform across the block
    const int tile_q0 = tile * kTileQ;
    const int tile_rows = min(kTileQ, q_len - tile_q0);
    __syncthreads();  // the previous tile is done with sq
    for (int i = threadIdx.x; i < kTileQ * kHd; i += kThreads) {
      const int r = i / kHd, d = i % kHd;
      const float v =
          r < tile_rows
              ? a.q[(q_begin + tile_q0 + r) * a.q_stride + static_cast<int64_t>(head) * kHd + d] *
                    a.scale
              : 0.0f;
      sq[r * kLdq + d] = Bf16(v);
    }
    __syncthreads();
    const int warp_row0 = warp * 16;  // this warp's first row in the tile
    const bool warp_active = warp_row0 < tile_rows;
    uint32_t qa[kHd / 16][4];
    if (warp_active) {
#pragma unroll
      for (int kk = 0; kk < kHd / 16; ++kk) {
        // Matrices: rows 0-7 / 8-15 of dims kk*16 + 0-7, then of + 8-15.
        LdMatrixX4(&sq[(warp_row0 + 8 * ((lane >> 3) & 1) + (lane & 7)) * kLdq + kk * 16 +
                       8 * (lane >> 4)],
                   qa[kk]);
      }
    }
    float o[kHd / 8][4];
#pragma unroll
    for (int n = 0; n < kHd / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.0f, l_hi = 0.0f;
    const int qpos_lo = pos0 + tile_q0 + warp_row0 + g;  // rows g and g + 8
    const int qpos_hi = qpos_lo + 8;
    const int key_end = pos0 + tile_q0 + tile_rows;

    if constexpr (kAsync) {  // key tile 0 into buffer 0
      KeyOffsets(a.kv, table, kv_head, 0, key_end, soff0);
      __syncthreads();
      IssueKvTile<kHd>(a.kv, kLdq, soff0, sk0, sv0);
      CpAsyncCommit();
    }
    for (int key0 = 0, buf = 0; key0 < key_end; key0 += kTileK, buf ^= kKvBuffers<KvT> - 1) {
      uint16_t* sk = sk0 + buf * kTileElems;
      uint16_t* sv = sv0 + buf * kTileElems;
      const int64_t* soff = soff0 + buf * kTileK;
      __syncthreads();  // the previous K/V tile is consumed: its buffer is free
      if constexpr (kAsync) {
        // Tile i + 1 into the other buffer while tile i is multiplied.
        const int next = key0 + kTileK;
        const int other = buf ^ 1;
        if (next < key_end) KeyOffsets(a.kv, table, kv_head, next, key_end, soff0 + other * kTileK);
        __syncthreads();
        if (next < key_end) {
          IssueKvTile<kHd>(a.kv, kLdq, soff0 + other * kTileK, sk0 + other * kTileElems,
                           sv0 + other * kTileElems);
        }
        CpAsyncCommit();
        CpAsyncWait<1>();  // this thread's copies of tile i have landed
      } else {
        LoadKvTile<kHd>(a.kv, table, kv_head, key0, key_end, kLdq, sk, sv, soff0);
      }
      __syncthreads();
      // Warp-uniform skips: rows past the tile, or keys all in this warp's future.
      if (!warp_active || key0 > pos0 + tile_q0 + warp_row0 + 15) continue;

      float s[kTileK / 8][4];
#pragma unroll
      for (int n = 0; n < kTileK / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < kHd / 16; ++kk) {
#pragma unroll
        for (int np = 0; np < kTileK / 16; ++np) {
          // Matrices: keys np*16 + 0-7 (dims 0-7, 8-15), then keys + 8-15.
          uint32_t kb[4];
          LdMatrixX4(&sk[(np * 16 + 8 * (lane >> 4) + (lane & 7)) * kLdq + kk * 16 +
                         8 * ((lane >> 3) & 1)],
                     kb);
          MmaBf16(s[2 * np], qa[kk], kb[0], kb[1]);
          MmaBf16(s[2 * np + 1], qa[kk], kb[2], kb[3]);
        }
      }
      // Causal and slot masks, then the online softmax per row.
      float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
      for (int n = 0; n < kTileK / 8; ++n) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int j = n * 8 + 2 * t + (i & 1);
          const int qpos = i < 2 ? qpos_lo : qpos_hi;
          if (key0 + j > qpos || soff[j] < 0) s[n][i] = -INFINITY;
        }
        mx_lo = fmaxf(mx_lo, fmaxf(s[n][0], s[n][1]));
        mx_hi = fmaxf(mx_hi, fmaxf(s[n][2], s[n][3]));
      }
      const float new_lo = fmaxf(m_lo, QuadMax(mx_lo));
      const float new_hi = fmaxf(m_hi, QuadMax(mx_hi));
      const float corr_lo = new_lo == -INFINITY ? 1.0f : expf(m_lo - new_lo);
      const float corr_hi = new_hi == -INFINITY ? 1.0f : expf(m_hi - new_hi);
      float sum_lo = 0.0f, sum_hi = 0.0f;
#pragma unroll
      for (int n = 0; n < kTileK / 8; ++n) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float mref = i < 2 ? new_lo : new_hi;
          s[n][i] = s[n][i] == -INFINITY ? 0.0f : expf(s[n][i] - mref);
        }
        sum_lo += s[n][0] + s[n][1];
        sum_hi += s[n][2] + s[n][3];
      }
      l_lo = l_lo * corr_lo + QuadSum(sum_lo);
      l_hi = l_hi * corr_hi + QuadSum(sum_hi);
      m_lo = new_lo;
      m_hi = new_hi;
#pragma unroll
      for (int n = 0; n < kHd / 8; ++n) {
        o[n][0] *= corr_lo;
        o[n][1] *= corr_lo;
        o[n][2] *= corr_hi;
        o[n][3] *= corr_hi;
      }
#pragma unroll
      for (int kk = 0; kk < kTileK / 16; ++kk) {
        const uint32_t pa[4] = {PackBf16(s[2 * kk][0], s[2 * kk][1]),
                                PackBf16(s[2 * kk][2], s[2 * kk][3]),
                                PackBf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                PackBf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int dp = 0; dp < kHd / 16; ++dp) {
          // Matrices (transposed): keys kk*16 + 0-7, 8-15 of dims dp*16 + 0-7,
          // then of dims + 8-15.
          uint32_t vb[4];
          LdMatrixX4Trans(&sv[(kk * 16 + 8 * ((lane >> 3) & 1) + (lane & 7)) * kLdq + dp * 16 +
                              8 * (lane >> 4)],
                          vb);
          MmaBf16(o[2 * dp], pa, vb[0], vb[1]);
          MmaBf16(o[2 * dp + 1], pa, vb[2], vb[3]);
        }
      }
    }
    if (!warp_active) continue;
    const float inv_lo = l_lo > 0.0f ? 1.0f / l_lo : 0.0f;
    const float inv_hi = l_hi > 0.0f ? 1.0f / l_hi : 0.0f;
    const int row_lo = warp_row0 + g;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = row_lo + 8 * half;
      if (row >= tile_rows) continue;
      const float inv = half == 0 ? inv_lo : inv_hi;
      const int64_t out = (static_cast<int64_t>(q_begin + tile_q0 + row) * a.n_heads + head) * kHd;
      if (a.out16 != nullptr) {
        // Even columns: each pair is one aligned 4-byte store.
        uint32_t* out16 = reinterpret_cast<uint32_t*>(a.out16 + out);
#pragma unroll
        for (int n = 0; n < kHd / 8; ++n) {
          out16[n * 4 + t] = PackBf16(o[n][2 * half] * inv, o[n][2 * half + 1] * inv);
        }
        continue;
      }
#pragma unroll
      for (int n = 0; n < kHd / 8; ++n) {
        a.out[out + n * 8 + 2 * t] = o[n][2 * half] * inv;
        a.out[out + n * 8 + 2 * t + 1] = o[n][2 * half + 1] * inv;
      }
    }
  }
}

template <int kHd, typename KvT>
absl::Status LaunchTensorCore(const AttentionArgs<KvT>& a, int num_seqs, cudaStream_t s) {
  constexpr size_t smem = SharedBytes<kHd, KvT>();
  if (smem > 48 * 1024) {
    TPS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(TensorCoreAttentionKernel<kHd, KvT>,
                                                  cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                  static_cast<int>(smem)));
  }
  const dim3 grid(a.n_heads, num_seqs, kTileSlots);
  TensorCoreAttentionKernel<kHd, KvT><<<grid, kThreads, smem, s>>>(a);
  return LaunchStatus("TensorCoreAttentionKernel");
}

}  // namespace

absl::Status PagedAttentionPrefill(const PagedAttentionParams& p, const Stream& stream,
                                   const Bf16Copy& copy) {
  if (const char* err = CheckAttentionShape(p)) return absl::InvalidArgumentError(err);
  const int64_t q_dim = static_cast<int64_t>(p.n_heads) * p.head_dim;
  if (copy.data != nullptr && GemmViaBf16RowElems(static_cast<int>(q_dim)) != q_dim) {
    return absl::InvalidArgumentError(
        "PagedAttentionPrefill: a bf16 copy needs n_heads * head_dim a multiple of 32");
  }
  if (p.num_seqs == 0) return absl::OkStatus();
  cudaStream_t s = static_cast<cudaStream_t>(stream.cuda_stream);
  TPS_KV_DTYPE_SWITCH(p.kv_dtype, KvT, {
    AttentionArgs<KvT> a = MakeAttentionArgs<KvT>(p);
    a.out16 = copy.data;
    switch (p.head_dim) {
      case 32:
        return LaunchTensorCore<32>(a, p.num_seqs, s);
      case 64:
        return LaunchTensorCore<64>(a, p.num_seqs, s);
      case 80:
        return LaunchTensorCore<80>(a, p.num_seqs, s);
      case 96:
        return LaunchTensorCore<96>(a, p.num_seqs, s);
      case 128:
        return LaunchTensorCore<128>(a, p.num_seqs, s);
      default:
        return LaunchPagedAttention(p, copy.data, s);  // f32 kernel: any head dim
    }
  });
}

}  // namespace tpserve::kernels::cuda
