// Decode-step CUDA graphs of the CUDA backend, keyed by shape bucket.
//
// A single-rank decode batch is padded to a batch-size bucket (1, 2, 4, 8,
// then multiples of 16 up to kMaxGraphBatch) with inert sequences (KV slot
// -1, a one-token context), its context bound to a power-of-two multiple
// of kDecodePartitionTokens tokens (every decode-attention partition length
// divides it), and its block tables to that bound. One graph per (batch
// bucket, context bucket) is captured on first use and replayed while the
// device buffers it points at stay in place: the owner counts reallocations
// of those buffers, and a count that differs from the one the graphs were
// captured at drops them all.
//
//   if (cache.Eligible(layout, head_rows)) {
//     PadDecodeLayout(BatchBucket(S), ContextBucket(layout.max_context), block_size, &layout);
//     ... stage the padded layout, grow scratch (counting moves) ...
//     TPS_RETURN_IF_ERROR(cache.Replay(S_padded, context, moves, stream, enqueue));
//   }
#ifndef TPSERVE_WORKER_ENGINE_CUDA_GRAPH_CACHE_H_
#define TPSERVE_WORKER_ENGINE_CUDA_GRAPH_CACHE_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_graph.h"
#include "worker/engine/forward_common.h"

namespace tpserve {

// Largest decode batch replayed from a graph; larger ones run eagerly. At
// most kernels::cuda::kSkinnyGemmMaxRows, so a captured step only uses
// launchers that set no function attributes (the tensor-core GEMM does).
inline constexpr int kMaxGraphBatch = 64;

// Decode batch sizes a graph is captured for: 1, 2, 4, 8, then multiples of 16.
int BatchBucket(int seqs);

// Context bound of a graph: a power-of-two number of decode partitions.
int ContextBucket(int max_context);

// Pads a decode layout to `seqs` sequences with inert entries (token 0 at
// position 0, KV slot -1 so nothing is written, one-token context over block
// 0) and its context bound to `context` (block tables widened to match).
void PadDecodeLayout(int seqs, int context, int block_size, StepLayout* l);

class DecodeGraphCache {
 public:
  // `enabled` false (`--cuda_graphs=false`): Eligible is always false.
  explicit DecodeGraphCache(bool enabled) : enabled_(enabled) {}

  // Whether a step can be replayed: graphs enabled, an all-decode batch of
  // 1..kMaxGraphBatch sequences, and the LM head on rows 0..S-1 in order.
  bool Eligible(const StepLayout& layout, const std::vector<int>& head_rows) const;

  // Launches the graph of (seqs, context) on `stream`, capturing `enqueue`
  // first when there is none. `moves` is the owner's count of reallocations
  // of the buffers the graphs point at.
  [[nodiscard]] absl::Status Replay(int seqs, int context, uint64_t moves, cudaStream_t stream,
                                    const std::function<absl::Status()>& enqueue);

  // Drops every graph (before the buffers or stream they use go away).
  void Clear() { graphs_.clear(); }

 private:
  const bool enabled_;
  uint64_t captured_at_moves_ = 0;
  std::map<std::pair<int, int>, kernels::cuda::CudaGraph> graphs_;  // (seqs, context) -> step
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_CUDA_GRAPH_CACHE_H_
