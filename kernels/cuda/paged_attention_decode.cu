// cuda::PagedAttentionDecode: split-KV attention for one query per sequence.
//
// Phase 1, grid (GQA group chunk, sequence, partition): an 8-warp block takes
// the query heads that share one KV head (up to kMaxGroup of them; larger
// groups split into several blocks; kGroup, the heads rounded up to 1, 2, 4
// or 8, sizes the register arrays) and the partition's keys
// (DecodePartitionTokens: 256, or 64-128 for a lone sequence's long
// context), in one pass: warp per key, each lane owning a
// run of consecutive head dims, so each K and V row is one coalesced warp
// request of one vector load per lane, made once per KV head rather than
// once per query head. Each warp keeps an online softmax per head over its
// keys; the warps merge at the end. One partition writes the output
// directly; otherwise it writes (max, sum, unnormalised P.V) per query head
// to the workspace and phase 2, grid (sequence, query head), merges the
// partitions with the usual log-sum-exp rescaling. Long contexts thus spread
// over many SMs even at batch 1; the shorter partitions of a lone sequence
// (since 2026-12-07, not yet measured on a GPU) spread a 512-4096-token
// context over 4x as many blocks as 256-token ones would.
//
// At batch 1 and short contexts a launch is a handful of blocks, so its time
// is one warp's chain of dependent steps. On an H100 (docs/benchmarks.md,
// "GPU", 2026-12-05), at a 40-token context: 22 us per layer with 4 warps
// and a warp-sum per key and head in sequence; 13.8 us with 8 warps, one
// butterfly for all of a step's scores, and two passes (scores, then P.V),
// each waiting on a block-table load and then a K or V load per step, and
// every lane taking every exp. Hence, since 2026-12-06 (not yet measured on
// a GPU): the table lookups done once up front, K and V loaded together in
// one pass, and a reduce-scatter that leaves each lane one score, so the
// step's exps are one per lane.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/decode_attention.cuh"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/paged_kv.cuh"

namespace tpserve::kernels::cuda {
namespace decode_attention {
namespace {

// One launch per phase: the blocks of decode_attention.cuh.
template <int kDimsPerLane, int kGroup, typename KvT>
__global__ void __launch_bounds__(kThreads) DecodePartitionKernel(DecodeArgs<KvT> a) {
  // The cache the launcher was given (also where a fused RoPE stores the new key).
  DecodePartitionBlock<kDimsPerLane, kGroup>(a, const_cast<KvT*>(a.kv.k_cache),
                                             const_cast<KvT*>(a.kv.v_cache), blockIdx.x, blockIdx.y,
                                             blockIdx.z);
}

template <typename KvT>
__global__ void __launch_bounds__(kThreads) DecodeMergeKernel(DecodeArgs<KvT> a) {
  DecodeMergeBlock(a, blockIdx.x, blockIdx.y);
}

template <int kDimsPerLane, int kGroup, typename KvT>
absl::Status LaunchPartitions(const DecodeArgs<KvT>& a, int num_seqs, const LaunchStream& s) {
  constexpr size_t smem = PartitionSharedBytes<kDimsPerLane>();
  LaunchKernel("DecodePartitionKernel", DecodePartitionKernel<kDimsPerLane, kGroup, KvT>,
               dim3(a.n_heads / a.group * GroupChunks(a.group), num_seqs, a.num_parts), kThreads,
               smem, s, a);
  return LaunchStatus("DecodePartitionKernel");
}

// kGroup: the heads per block (a group, or kMaxGroup of a larger one)
// rounded up to 1, 2, 4 or 8.
template <int kDimsPerLane, typename KvT>
absl::Status LaunchPartitionsForGroup(const DecodeArgs<KvT>& a, int num_seqs,
                                      const LaunchStream& s) {
  const int heads = a.group < kMaxGroup ? a.group : kMaxGroup;
  if (heads == 1) return LaunchPartitions<kDimsPerLane, 1>(a, num_seqs, s);
  if (heads == 2) return LaunchPartitions<kDimsPerLane, 2>(a, num_seqs, s);
  if (heads <= 4) return LaunchPartitions<kDimsPerLane, 4>(a, num_seqs, s);
  return LaunchPartitions<kDimsPerLane, kMaxGroup>(a, num_seqs, s);
}

template <int kDimsPerLane, typename KvT>
absl::Status LaunchDecode(const DecodeArgs<KvT>& a, int num_seqs, const LaunchStream& s) {
  if (absl::Status st = LaunchPartitionsForGroup<kDimsPerLane>(a, num_seqs, s); !st.ok()) return st;
  if (a.partial == nullptr) return absl::OkStatus();
  LaunchKernel("DecodeMergeKernel", DecodeMergeKernel<KvT>, dim3(num_seqs, a.n_heads), kThreads, 0,
               s, a);
  return LaunchStatus("DecodeMergeKernel");
}

absl::Status Decode(const PagedAttentionParams& p, int max_context_len, float* workspace,
                    int64_t workspace_floats, const DecodeRopeKvWrite* fuse, int partition_tokens,
                    const Stream& stream) {
  float* partial = nullptr;
  if (absl::Status st = CheckDecode(p, max_context_len, workspace, workspace_floats, fuse,
                                    partition_tokens, &partial);
      !st.ok()) {
    return st;
  }
  if (p.num_seqs == 0) return absl::OkStatus();
  const LaunchStream s = ForLaunch(stream);
  TPS_KV_DTYPE_SWITCH(p.kv_dtype, KvT, {
    const DecodeArgs<KvT> a =
        MakeDecodeArgs<KvT>(p, max_context_len, partial, fuse, partition_tokens);
    TPS_HEAD_DIM_SWITCH(p.head_dim, kDimsPerLane,
                        { return LaunchDecode<kDimsPerLane, KvT>(a, p.num_seqs, s); });
  });
}

}  // namespace
}  // namespace decode_attention

int64_t DecodeAttentionWorkspaceFloats(int num_seqs, int n_heads, int head_dim, int max_context_len,
                                       int partition_tokens) {
  namespace da = decode_attention;
  const int parts =
      da::NumParts(max_context_len, da::PartTokens(num_seqs, max_context_len, partition_tokens));
  if (parts <= 1) return 0;
  return static_cast<int64_t>(num_seqs) * n_heads * parts * (head_dim + 2);
}

absl::Status PagedAttentionDecode(const PagedAttentionParams& p, int max_context_len,
                                  float* workspace, int64_t workspace_floats, const Stream& stream,
                                  int partition_tokens) {
  return decode_attention::Decode(p, max_context_len, workspace, workspace_floats, nullptr,
                                  partition_tokens, stream);
}

absl::Status PagedAttentionDecode(const PagedAttentionParams& p, int max_context_len,
                                  float* workspace, int64_t workspace_floats,
                                  const DecodeRopeKvWrite& fuse, const Stream& stream) {
  return decode_attention::Decode(p, max_context_len, workspace, workspace_floats, &fuse, 0,
                                  stream);
}

}  // namespace tpserve::kernels::cuda
