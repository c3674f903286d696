#include "worker/engine/cuda/graph_cache.h"

#include <algorithm>

#include "common/status.h"
#include "kernels/cuda/cuda_ops.h"

namespace tpserve {

namespace kc = kernels::cuda;

static_assert(kMaxGraphBatch <= kc::kSkinnyGemmMaxRows, "captured steps use the skinny GEMM only");

int BatchBucket(int seqs) {
  if (seqs <= 8) {
    int b = 1;
    while (b < seqs) b *= 2;
    return b;
  }
  return (seqs + 15) / 16 * 16;
}

int ContextBucket(int max_context) {
  const int parts = (max_context + kc::kDecodePartitionTokens - 1) / kc::kDecodePartitionTokens;
  int b = 1;
  while (b < parts) b *= 2;
  return b * kc::kDecodePartitionTokens;
}

void PadDecodeLayout(int seqs, int context, int block_size, StepLayout* l) {
  const int S = l->num_seqs();
  const int width = (context + block_size - 1) / block_size;
  std::vector<int32_t> tables(static_cast<size_t>(seqs) * width, 0);
  for (int i = 0; i < S; ++i) {
    std::copy_n(l->tables.begin() + static_cast<size_t>(i) * l->max_blocks, l->max_blocks,
                tables.begin() + static_cast<size_t>(i) * width);
  }
  l->tables = std::move(tables);
  l->max_blocks = width;
  l->max_context = context;
  l->tokens.resize(seqs, 0);
  l->positions.resize(seqs, 0);
  l->slots.resize(seqs, -1);
  l->starts.resize(seqs, 0);
  while (static_cast<int>(l->cu_q.size()) < seqs + 1) l->cu_q.push_back(l->cu_q.back() + 1);
}

bool DecodeGraphCache::Eligible(const StepLayout& layout, const std::vector<int>& head_rows) const {
  const int S = layout.num_seqs();
  if (!enabled_ || !layout.all_decode || S == 0 || S > kMaxGraphBatch) return false;
  if (static_cast<int>(head_rows.size()) != S) return false;
  for (int i = 0; i < S; ++i) {
    if (head_rows[i] != i) return false;
  }
  return true;
}

absl::Status DecodeGraphCache::Replay(int seqs, int context, uint64_t moves, cudaStream_t stream,
                                      const std::function<absl::Status()>& enqueue) {
  if (captured_at_moves_ != moves) {  // some captured pointer moved
    graphs_.clear();
    captured_at_moves_ = moves;
  }
  const std::pair<int, int> key(seqs, context);
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    TPS_ASSIGN_OR_RETURN(kc::CudaGraph g, kc::CudaGraph::Capture(stream, enqueue));
    it = graphs_.emplace(key, std::move(g)).first;
  }
  return it->second.Launch(stream);
}

}  // namespace tpserve
