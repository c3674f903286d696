// Decode attention's blocks (paged_attention_decode.cu's file comment):
// phase 1, one block per (GQA group chunk, sequence, partition), and phase 2,
// the merge of a sequence's partitions, one block per (sequence, query head).
// Each is one block's work with its block index passed in, so that
// paged_attention_decode.cu's kernels (one launch per phase) and
// decode_persistent.cu's kernel (a whole decode step in one cooperative
// launch, block indices looped over) run the same code: the same bits by
// construction.
//
//   // a kernel of kThreads threads, PartitionSharedBytes<kDimsPerLane>() of dynamic shared memory
//   DecodePartitionBlock<kDimsPerLane, kGroup>(args, k_cache, v_cache, blockIdx.x, blockIdx.y,
//                                              blockIdx.z);
#ifndef TPSERVE_KERNELS_CUDA_DECODE_ATTENTION_CUH_
#define TPSERVE_KERNELS_CUDA_DECODE_ATTENTION_CUH_

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/paged_kv.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/shared_memory.cuh"

namespace tpserve::kernels::cuda::decode_attention {
constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kPart = kDecodePartitionTokens;  // the longest partition (DecodeArgs::part_tokens)
// Query heads one block scores against each K row (registers: kGroup <= kMaxGroup x
// head_dim / 32 query values per lane); larger GQA groups take several blocks.
constexpr int kMaxGroup = 8;

__host__ __device__ inline int GroupChunks(int group) {
  return (group + kMaxGroup - 1) / kMaxGroup;
}

// Head dims [lane * kN, lane * kN + kN) of the K or V row at `row`, zeros
// past head_dim: one vector load (8 bf16 = 16 bytes at head_dim 256, 4 bytes
// at 64) when head_dim is a multiple of kN (`whole_runs`), else one load per
// element.
template <int kN, typename KvT>
__device__ __forceinline__ void LoadLaneDims(const KvT* row, int lane, int hd, bool whole_runs,
                                             float (&out)[kN]) {
  const int d0 = lane * kN;
  if (whole_runs && d0 < hd) {
    LoadKvRun<kN>(row + d0, out);
    return;
  }
#pragma unroll
  for (int i = 0; i < kN; ++i) out[i] = !whole_runs && d0 + i < hd ? LoadKv(row + d0 + i) : 0.0f;
}

// The step's RoPE and KV-cache write when fused (rope.q == nullptr: not
// fused, q already rotated and the new key already in the cache).
template <typename KvT>
struct DecodeRopeArgs {
  RopeArgs rope;  // rope.q is the attention's q, rope.k the new tokens' k rows
  const float* v;
  int64_t v_stride;
  const int64_t* slots;  // stored into the block's cache (DecodePartitionBlock's k_cache, v_cache)
  int64_t num_slots;
};

template <typename KvT>
struct DecodeArgs : AttentionArgs<KvT> {
  int num_parts;
  int part_tokens;  // keys per partition, <= kPart
  float* partial;   // [seq][head][part][head_dim + 2]: max, sum, P.V
  DecodeRopeArgs<KvT> fused;
};

// s_off's mark for the new token's key when RoPE is fused: read from shared
// memory (rotated, rounded as the cache holds it), not from the cache.
constexpr int64_t kNewKey = -2;

__host__ __device__ inline int64_t PartialOffset(int seq, int head, int part, int n_heads,
                                                 int num_parts, int hd) {
  return ((static_cast<int64_t>(seq) * n_heads + head) * num_parts + part) * (hd + 2);
}

// Shared memory of DecodePartitionKernel: each key's K/V element offset
// [kPart]; with RoPE fused, the angles' sines and cosines [kDimsPerLane *
// 16] each (doubles); each warp's P.V [kWarps][kDimsPerLane * 32], per-warp
// maxima and sums [kWarps][kMaxGroup] each; with RoPE fused, the block's q
// rows [kMaxGroup][kDimsPerLane * 32] and the new key's k and v rows [2][kDimsPerLane * 32].
// Every region is a multiple of 32 bytes, so rows keep LoadKvRun's
// alignment. Dynamic, not static: emulated builds keep static __shared__
// arrays in thread-local storage once per instantiation
// (docs/cuda_emulator.md), and there are one per head-dim class and KV dtype.
template <int kDimsPerLane>
constexpr size_t PartitionSharedBytes() {
  return sizeof(int64_t) * kPart + sizeof(double) * 2 * kDimsPerLane * 16 +
         sizeof(float) * ((kWarps + kMaxGroup + 2) * kDimsPerLane * 32 + 2 * kWarps * kMaxGroup);
}
static_assert(PartitionSharedBytes<8>() <= 48 * 1024, "above 48 KiB would need an opt-in");

constexpr int Log2(int v) { return v <= 1 ? 0 : 1 + Log2(v / 2); }

// K/V rows a warp has in flight per step: as many as keep the kUnroll x
// kGroup scores within one reduce-scatter (32 values) and the K and V
// registers within 32 floats per lane.
template <int kDimsPerLane, int kGroup>
constexpr int UnrollFor() {
  const int by_scores = 32 / kGroup;
  const int by_regs = 16 / kDimsPerLane;
  const int u = by_scores < by_regs ? by_scores : by_regs;
  return u < 1 ? 1 : u;
}

// The fused RoPE and KV-cache write, as RopeKvWriteKernel does them for
// token t: the block's `heads` q rows (from qrow) rotated into s_q, and,
// when the block's partition holds the new key, that key's k row rotated and
// its v row copied into s_new, both rounded as the cache stores them; the
// first block of the KV head (`writer`) also stores them in the token's
// cache slot (slots outside the pool skipped). s_q is complete on return;
// s_new once the caller's next barrier has run.
template <int kRow, typename KvT>
__device__ void RotateAndWriteNewKey(const DecodeArgs<KvT>& a, KvT* k_cache, KvT* v_cache, int t,
                                     int kv_head, int hd, int heads, bool has_new, bool writer,
                                     const float* qrow, double* s_sin, double* s_cos,
                                     float (*s_q)[kRow], float (*s_new)[kRow]) {
  const DecodeRopeArgs<KvT>& f = a.fused;
  const int half = hd / 2;
  for (int pair = threadIdx.x; pair < half; pair += kThreads) {
    sincos(static_cast<double>(f.rope.positions[t]) * InvFreq(f.rope, pair), &s_sin[pair],
           &s_cos[pair]);
  }
  for (int i = threadIdx.x; i < heads * hd; i += kThreads) s_q[i / hd][i % hd] = qrow[i];
  const int64_t kv_off = static_cast<int64_t>(kv_head) * hd;
  if (has_new) {
    for (int d = threadIdx.x; d < hd; d += kThreads) {
      s_new[0][d] = f.rope.k[t * f.rope.k_stride + kv_off + d];
      s_new[1][d] = f.v[t * f.v_stride + kv_off + d];
    }
  }
  __syncthreads();  // angles and unrotated rows
  const int rows = heads + (has_new ? 1 : 0);
  for (int i = threadIdx.x; i < rows * half; i += kThreads) {
    const int r = i / half;
    RotatePair(f.rope, r < heads ? s_q[r] : s_new[0], i % half, s_sin[i % half], s_cos[i % half]);
  }
  __syncthreads();  // rotated rows
  if (!has_new) return;
  const int64_t slot = f.slots[t];
  const bool store = writer && slot >= 0 && slot < f.num_slots;
  const int64_t cache_off = (slot * a.kv.n_kv_heads + kv_head) * hd;
  for (int d = threadIdx.x; d < hd; d += kThreads) {
    if (store) {
      StoreKv(k_cache + cache_off + d, s_new[0][d]);
      StoreKv(v_cache + cache_off + d, s_new[1][d]);
    }
    s_new[0][d] = RoundToKv<KvT>(s_new[0][d]);
    s_new[1][d] = RoundToKv<KvT>(s_new[1][d]);
  }
}

// Phase 1's block bx (GQA group chunk) of sequence `seq`, partition `part`,
// over the layer's cache k_cache / v_cache (read, and written when RoPE is
// fused; a.kv's own cache pointers are not used).
template <int kDimsPerLane, int kGroup, typename KvT>
__device__ __forceinline__ void DecodePartitionBlock(const DecodeArgs<KvT>& a, KvT* k_cache,
                                                     KvT* v_cache, int bx, int seq, int part) {
  constexpr int kUnroll = UnrollFor<kDimsPerLane, kGroup>();
  constexpr int kScores = kUnroll * kGroup;  // per warp step, a power of two <= 32
  // After the reduce-scatter lane l holds score l >> kShift, i.e. key slot
  // u = (l >> kShift) / kGroup and head g = (l >> kShift) % kGroup; lanes
  // of one head differ in bits [kShift + log2 kGroup, 5).
  constexpr int kShift = 5 - Log2(kScores);
  constexpr int kHeadBits = kShift + Log2(kGroup);
  static_assert(kScores <= 32 && (kScores & (kScores - 1)) == 0, "one reduce-scatter per step");
  constexpr int kRow = kDimsPerLane * 32;  // a head row's floats in shared memory
  unsigned char* smem = DynamicSharedMemory<unsigned char>();
  int64_t* s_off = reinterpret_cast<int64_t*>(smem);
  double* s_sin = reinterpret_cast<double*>(s_off + kPart);
  double* s_cos = s_sin + kRow / 2;
  auto s_acc = reinterpret_cast<float(*)[kRow]>(s_cos + kRow / 2);
  auto s_q = s_acc + kWarps;     // [kMaxGroup]
  auto s_new = s_q + kMaxGroup;  // [2]: k, v
  auto s_max = reinterpret_cast<float(*)[kMaxGroup]>(s_new + 2);
  auto s_sum = s_max + kWarps;
  const int chunks = GroupChunks(a.group);
  const int kv_head = bx / chunks;
  const int head0 = kv_head * a.group + (bx % chunks) * kMaxGroup;
  const int heads = min(kGroup, (kv_head + 1) * a.group - head0);  // block-uniform
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int hd = a.kv.head_dim;
  const bool whole_runs = hd % kDimsPerLane == 0;
  const int ctx = a.start_pos[seq] + 1;
  const int key0 = part * a.part_tokens;
  const int keys = min(a.part_tokens, ctx - key0);  // <= 0 for partitions past this context
  auto partial_of = [&](int g) {
    return a.partial == nullptr
               ? nullptr
               : a.partial + PartialOffset(seq, head0 + g, part, a.n_heads, a.num_parts, hd);
  };
  AllowDependents();
  if (keys <= 0) {
    WaitForPrimary();
    if (a.partial != nullptr && static_cast<int>(threadIdx.x) < heads) {
      float* partial = partial_of(static_cast<int>(threadIdx.x));
      partial[0] = -INFINITY;
      partial[1] = 0.0f;
    }
    return;
  }
  const bool fused = a.fused.rope.q != nullptr;      // grid-uniform
  const bool has_new = fused && key0 + keys == ctx;  // this partition holds the new key
  const int t = a.cu_q_lens[seq];                    // the sequence's one query row
  // Every key's block-table lookup at once, one thread per key, so that the
  // loop below waits on one global load per step, not two in sequence.
  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.kv.max_blocks_per_seq;
  for (int j = threadIdx.x; j < keys; j += kThreads) {
    const int64_t off = a.kv.Offset(table, key0 + j, kv_head);  // -1: masked (bad block id)
    s_off[j] = has_new && j == keys - 1 && off >= 0 ? kNewKey : off;
  }
  // The table and positions are the step's inputs, uploaded before its first
  // kernel; q, the cache and the outputs wait for the kernel before this one
  // (launch.cuh).
  WaitForPrimary();
  const float* qrow = a.q + t * a.q_stride + static_cast<int64_t>(head0) * hd;
  if (fused)
    RotateAndWriteNewKey<kRow>(a, k_cache, v_cache, t, kv_head, hd, heads, has_new,
                               bx % chunks == 0, qrow, s_sin, s_cos, s_q, s_new);

  // Slots g >= heads hold zeros: their scores are computed (0) and never
  // written out, which keeps every loop over g a compile-time one.
  float q[kGroup][kDimsPerLane];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
      const int d = lane * kDimsPerLane + i;
      q[g][i] = g < heads && d < hd ? (fused ? s_q[g][d] : qrow[g * hd + d]) * a.scale : 0.0f;
    }
  }
  __syncthreads();  // s_off

  // One pass, online softmax per warp: warp w takes keys w, w + kWarps, ...,
  // kUnroll at a time with their K and V rows loaded together. Lanes own
  // head dims for the dot products and P.V; for the softmax each lane owns
  // one of the step's scores (reduce-scatter), so each exp is taken once.
  const int my_slot = (lane >> kShift) / kGroup;
  float m_run = -INFINITY;  // running max of this lane's head
  float p_sum = 0.0f;       // this lane's slot's share of that head's sum
  float acc[kGroup][kDimsPerLane];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) acc[g][i] = 0.0f;
  }
  for (int j0 = warp; j0 < keys; j0 += kWarps * kUnroll) {
    int64_t off[kUnroll];
    float kx[kUnroll][kDimsPerLane];
    float vx[kUnroll][kDimsPerLane];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = j0 + u * kWarps;
      off[u] = j < keys ? s_off[j] : -1;
      if (off[u] >= 0) {  // warp-uniform
        LoadLaneDims<kDimsPerLane>(k_cache + off[u], lane, hd, whole_runs, kx[u]);
        LoadLaneDims<kDimsPerLane>(v_cache + off[u], lane, hd, whole_runs, vx[u]);
      } else if (off[u] == kNewKey) {  // warp-uniform
        LoadLaneDims<kDimsPerLane>(s_new[0], lane, hd, whole_runs, kx[u]);
        LoadLaneDims<kDimsPerLane>(s_new[1], lane, hd, whole_runs, vx[u]);
      } else {
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) kx[u][i] = vx[u][i] = 0.0f;
      }
    }
    float dot[kScores];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        float d = 0.0f;
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) d = fmaf(q[g][i], kx[u][i], d);
        dot[u * kGroup + g] = d;
      }
    }
    bool valid = false;  // this lane's key slot holds an unmasked key
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) valid = my_slot == u ? off[u] != -1 : valid;
    // Every lane runs the reduce-scatter's shuffles; `valid` only picks the result.
    const float reduced = WarpReduceScatter<kScores>(dot, lane);
    const float s = valid ? reduced : -INFINITY;
    float step_max = s;
#pragma unroll
    for (int o = 16; o >= (1 << kHeadBits); o >>= 1) {
      step_max = fmaxf(step_max, __shfl_xor_sync(0xffffffffu, step_max, o));
    }
    const float m_new = fmaxf(m_run, step_max);
    // m_new = -inf: no unmasked key of this head yet; nothing to rescale.
    const float r = m_new == -INFINITY ? 1.0f : expf(m_run - m_new);
    const float p = valid ? expf(s - m_new) : 0.0f;
    m_run = m_new;
    p_sum = fmaf(p_sum, r, p);
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      const float rg = __shfl_sync(0xffffffffu, r, g << kShift);
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) acc[g][i] *= rg;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const float pu = __shfl_sync(0xffffffffu, p, (u * kGroup + g) << kShift);
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) acc[g][i] = fmaf(pu, vx[u][i], acc[g][i]);
      }
    }
  }
  // This warp's sum per head: its lanes' slot shares, over the slot bits.
#pragma unroll
  for (int o = 16; o >= (1 << kHeadBits); o >>= 1) {
    p_sum += __shfl_xor_sync(0xffffffffu, p_sum, o);
  }
  // Merge the warps: each scales its sums and P.V by exp(its max - block max).
  float warp_max[kGroup];
  float warp_sum[kGroup];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    warp_max[g] = __shfl_sync(0xffffffffu, m_run, g << kShift);
    warp_sum[g] = __shfl_sync(0xffffffffu, p_sum, g << kShift);
  }
  if (lane == 0) {
#pragma unroll
    for (int g = 0; g < kGroup; ++g) s_max[warp][g] = warp_max[g];
  }
  __syncthreads();
  float m[kGroup];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    m[g] = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) m[g] = fmaxf(m[g], s_max[w][g]);
    // A warp without unmasked keys of this head (or a block without any) adds nothing.
    const float sc = warp_max[g] == -INFINITY ? 0.0f : expf(warp_max[g] - m[g]);
    warp_sum[g] *= sc;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) acc[g][i] *= sc;
  }
  if (lane == 0) {
#pragma unroll
    for (int g = 0; g < kGroup; ++g) s_sum[warp][g] = warp_sum[g];
  }
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    if (g >= heads) break;  // block-uniform
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) s_acc[warp][lane * kDimsPerLane + i] = acc[g][i];
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) total += s_sum[w][g];
    float* partial = partial_of(g);
    float* out_row = a.out + (static_cast<int64_t>(a.cu_q_lens[seq]) * a.n_heads + head0 + g) * hd;
    for (int d = threadIdx.x; d < hd; d += kThreads) {
      float v = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) v += s_acc[w][d];
      if (partial == nullptr) {
        out_row[d] = total > 0.0f ? v / total : 0.0f;
      } else {
        partial[2 + d] = v;
      }
    }
    if (partial != nullptr && threadIdx.x == 0) {
      partial[0] = total > 0.0f ? m[g] : -INFINITY;
      partial[1] = total;
    }
    __syncthreads();  // s_acc is rewritten for the next head
  }
}

// Phase 2's block: sequence `seq`'s query head `head`, its partitions merged.
template <typename KvT>
__device__ __forceinline__ void DecodeMergeBlock(const DecodeArgs<KvT>& a, int seq, int head) {
  const int hd = a.kv.head_dim;
  AllowDependents();
  WaitForPrimary();
  const float* base = a.partial + PartialOffset(seq, head, 0, a.n_heads, a.num_parts, hd);
  const int64_t step = hd + 2;
  float m = -INFINITY;
  for (int part = 0; part < a.num_parts; ++part) m = fmaxf(m, base[part * step]);
  float total = 0.0f;
  for (int part = 0; part < a.num_parts; ++part) {
    const float pm = base[part * step];
    if (pm != -INFINITY) total += base[part * step + 1] * expf(pm - m);
  }
  float* out_row = a.out + (static_cast<int64_t>(a.cu_q_lens[seq]) * a.n_heads + head) * hd;
  for (int d = threadIdx.x; d < hd; d += kThreads) {
    float v = 0.0f;
    for (int part = 0; part < a.num_parts; ++part) {
      const float pm = base[part * step];
      if (pm != -INFINITY) v += base[part * step + 2 + d] * expf(pm - m);
    }
    out_row[d] = total > 0.0f ? v / total : 0.0f;
  }
}

// Host side, shared by the launchers.

// The partition length a call uses: `partition_tokens`, or 0 for
// DecodePartitionTokens's choice.
inline int PartTokens(int num_seqs, int max_context_len, int partition_tokens) {
  return partition_tokens > 0 ? partition_tokens : DecodePartitionTokens(num_seqs, max_context_len);
}

inline int NumParts(int max_context_len, int part_tokens) {
  return (max_context_len + part_tokens - 1) / part_tokens;
}

// The fused RoPE and KV-cache write: valid as RopeKvWrite's arguments, and
// rotating and storing exactly the rows this attention reads (the same q
// buffer, heads, head_dim, cache and pool, one token per sequence).
inline absl::Status CheckFusedRope(const PagedAttentionParams& p, const DecodeRopeKvWrite& f) {
  if (absl::Status st = CheckRopeKvWrite(f.rope, f.kv); !st.ok()) return st;
  const RopeParams& r = f.rope;
  const KvCacheWriteParams& kv = f.kv;
  if (r.q != p.q ||
      RowStride(r.q_stride, r.n_heads, r.head_dim) !=
          RowStride(p.q_stride, p.n_heads, p.head_dim) ||
      r.n_heads != p.n_heads || r.n_kv_heads != p.n_kv_heads || r.head_dim != p.head_dim ||
      r.tokens != p.num_seqs) {
    return absl::InvalidArgumentError(
        "PagedAttentionDecode: the fused RoPE must cover this attention's q (same buffer, "
        "stride, heads, head_dim, one token per sequence)");
  }
  if (kv.k_cache != p.k_cache || kv.v_cache != p.v_cache || kv.kv_dtype != p.kv_dtype ||
      kv.block_size != p.block_size || kv.num_blocks != p.num_blocks) {
    return absl::InvalidArgumentError(
        "PagedAttentionDecode: the fused KV-cache write must store into this attention's cache "
        "(same cache, dtype, block size, pool)");
  }
  return absl::OkStatus();
}

// PagedAttentionDecode's argument checks (`fuse` null when not fused;
// `partition_tokens` 0 or its override); on success *partial is the
// workspace the partitions write (null: one partition, written straight to
// the output).
inline absl::Status CheckDecode(const PagedAttentionParams& p, int max_context_len,
                                float* workspace, int64_t workspace_floats,
                                const DecodeRopeKvWrite* fuse, int partition_tokens,
                                float** partial) {
  if (const char* err = CheckAttentionShape(p)) return absl::InvalidArgumentError(err);
  if (fuse != nullptr) {
    if (absl::Status st = CheckFusedRope(p, *fuse); !st.ok()) return st;
  }
  *partial = nullptr;
  if (p.num_seqs == 0) return absl::OkStatus();
  if (max_context_len <= 0)
    return absl::InvalidArgumentError("PagedAttentionDecode: max_context_len <= 0");
  if (partition_tokens < 0 || partition_tokens > kPart) {
    return absl::InvalidArgumentError(
        absl::StrCat("PagedAttentionDecode: partition_tokens ", partition_tokens,
                     " is neither 0 (the default) nor in 1..", kPart));
  }
  if (NumParts(max_context_len, PartTokens(p.num_seqs, max_context_len, partition_tokens)) > 65535)
    return absl::InvalidArgumentError("PagedAttentionDecode: context too long");
  const int64_t need = DecodeAttentionWorkspaceFloats(p.num_seqs, p.n_heads, p.head_dim,
                                                      max_context_len, partition_tokens);
  if (need > 0 && (workspace == nullptr || workspace_floats < need)) {
    return absl::InvalidArgumentError("PagedAttentionDecode: workspace too small");
  }
  *partial = need > 0 ? workspace : nullptr;
  return absl::OkStatus();
}

// The blocks' arguments for a call CheckDecode accepted.
template <typename KvT>
DecodeArgs<KvT> MakeDecodeArgs(const PagedAttentionParams& p, int max_context_len, float* partial,
                               const DecodeRopeKvWrite* fuse, int partition_tokens = 0) {
  const int part_tokens = PartTokens(p.num_seqs, max_context_len, partition_tokens);
  DecodeArgs<KvT> a{
      MakeAttentionArgs<KvT>(p), NumParts(max_context_len, part_tokens), part_tokens, partial, {}};
  if (fuse != nullptr) {
    const KvCacheWriteParams& kv = fuse->kv;
    a.fused = DecodeRopeArgs<KvT>{MakeRopeArgs(fuse->rope), kv.v,
                                  RowStride(kv.v_stride, kv.n_kv_heads, kv.head_dim),
                                  kv.slot_mapping, int64_t{kv.num_blocks} * kv.block_size};
  }
  return a;
}

}  // namespace tpserve::kernels::cuda::decode_attention

#endif  // TPSERVE_KERNELS_CUDA_DECODE_ATTENTION_CUH_
