#include "worker/engine/forward_common.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace tpserve {
StepArrays StepLayout::HostArrays() const {
  return StepArrays{.tokens = tokens.data(),
                    .positions = positions.data(),
                    .slots = slots.data(),
                    .cu_q = cu_q.data(),
                    .starts = starts.data(),
                    .tables = tables.data(),
                    .num_seqs = num_seqs(),
                    .num_tokens = num_tokens(),
                    .max_blocks = max_blocks};
}

StepLayout FlattenStep(const StepBatch& batch, int block_size) {
  const int bs = block_size;
  const int S = static_cast<int>(batch.seqs.size());
  StepLayout l;
  l.cu_q.assign(S + 1, 0);
  l.starts.resize(S);
  for (int i = 0; i < S; ++i) {
    const SequenceInput& s = batch.seqs[i];
    for (size_t j = 0; j < s.tokens.size(); ++j) {
      const int32_t pos = s.start_pos + static_cast<int32_t>(j);
      l.tokens.push_back(s.tokens[j]);
      l.positions.push_back(pos);
      l.slots.push_back(int64_t{s.block_table[pos / bs]} * bs + pos % bs);
    }
    l.cu_q[i + 1] = static_cast<int32_t>(l.tokens.size());
    l.starts[i] = s.start_pos;
    const int end = s.start_pos + static_cast<int>(s.tokens.size());
    l.max_context = std::max(l.max_context, end);
    l.max_blocks = std::max(l.max_blocks, (end + bs - 1) / bs);
    l.all_decode = l.all_decode && s.tokens.size() == 1;
  }
  l.tables.assign(static_cast<size_t>(S) * l.max_blocks, 0);
  for (int i = 0; i < S; ++i) {
    const std::vector<int32_t>& bt = batch.seqs[i].block_table;
    std::copy_n(bt.begin(), std::min<size_t>(bt.size(), l.max_blocks),
                l.tables.begin() + static_cast<size_t>(i) * l.max_blocks);
  }
  return l;
}

RankDims RankDims::For(const ModelConfig& config, const RankShard& shard) {
  RankDims d;
  d.hidden = config.hidden_size;
  d.head_dim = config.head_dim;
  d.n_heads = static_cast<int>(shard.q_heads.count);
  d.n_kv_heads = static_cast<int>(shard.kv_heads.count);
  d.q_dim = d.n_heads * d.head_dim;
  d.kv_dim = d.n_kv_heads * d.head_dim;
  d.qkv_dim = d.q_dim + 2 * d.kv_dim;
  d.ffn = static_cast<int>(shard.ffn.count);
  return d;
}

RowParallelChunks RowParallelChunks::For(const ModelConfig& config) {
  return {.o = std::gcd(config.head_dim, 32),
          .down = static_cast<int>(std::gcd<int64_t>(FfnSplitUnit(config), 32))};
}

kernels::EmbeddingParams MakeEmbeddingParams(const RankShard& shard, int hidden, const void* table,
                                             DType dtype, const StepArrays& a, float* out) {
  kernels::EmbeddingParams p;
  p.table = table;
  p.dtype = dtype;
  p.tokens = a.tokens;
  p.out = out;
  p.num_tokens = a.num_tokens;
  p.dim = hidden;
  p.rows = static_cast<int>(shard.vocab.count);
  p.row_offset = static_cast<int>(shard.vocab.begin);
  return p;
}

kernels::RopeParams MakeRopeParams(const ModelConfig& c, const RankDims& d, const StepArrays& a,
                                   float* qkv) {
  kernels::RopeParams p;
  p.q = qkv;
  p.k = qkv + d.q_dim;
  p.positions = a.positions;
  p.tokens = a.num_tokens;
  p.n_heads = d.n_heads;
  p.n_kv_heads = d.n_kv_heads;
  p.head_dim = d.head_dim;
  p.q_stride = d.qkv_dim;
  p.k_stride = d.qkv_dim;
  p.theta = c.rope_theta;
  p.neox = c.rope_neox;
  p.scaling = c.rope_scaling;
  return p;
}

kernels::KvCacheWriteParams MakeKvCacheWriteParams(const RankDims& d, const StepArrays& a,
                                                   const float* qkv, const LayerKvCache& kv) {
  kernels::KvCacheWriteParams p;
  p.k = qkv + d.q_dim;
  p.v = qkv + d.q_dim + d.kv_dim;
  p.k_cache = kv.k;
  p.v_cache = kv.v;
  p.kv_dtype = kv.dtype;
  p.slot_mapping = a.slots;
  p.tokens = a.num_tokens;
  p.n_kv_heads = d.n_kv_heads;
  p.head_dim = d.head_dim;
  p.block_size = kv.block_size;
  p.num_blocks = kv.num_blocks;
  p.k_stride = d.qkv_dim;
  p.v_stride = d.qkv_dim;
  return p;
}

kernels::PagedAttentionParams MakeAttentionParams(const RankDims& d, const StepArrays& a,
                                                  const float* qkv, const LayerKvCache& kv,
                                                  float* out) {
  kernels::PagedAttentionParams p;
  p.q = qkv;
  p.k_cache = kv.k;
  p.v_cache = kv.v;
  p.kv_dtype = kv.dtype;
  p.out = out;
  p.block_tables = a.tables;
  p.cu_q_lens = a.cu_q;
  p.start_pos = a.starts;
  p.num_seqs = a.num_seqs;
  p.max_blocks_per_seq = a.max_blocks;
  p.n_heads = d.n_heads;
  p.n_kv_heads = d.n_kv_heads;
  p.head_dim = d.head_dim;
  p.block_size = kv.block_size;
  p.num_blocks = kv.num_blocks;
  p.q_stride = d.qkv_dim;
  p.scale = 1.0f / std::sqrt(static_cast<float>(d.head_dim));
  return p;
}

void ScatterVocabSlices(const ShardPlan& plan, const float* gathered, int rows, int slice_rows,
                        int64_t padded, int vocab, std::vector<float>* logits) {
  logits->assign(static_cast<size_t>(rows) * vocab, 0.0f);
  for (int rk = 0; rk < plan.world_size(); ++rk) {
    const IndexRange& v = plan.shard(rk).vocab;
    for (int r = 0; r < rows; ++r) {
      std::copy_n(gathered + (int64_t{rk} * slice_rows + r) * padded, v.count,
                  logits->data() + size_t{1} * r * vocab + v.begin);
    }
  }
}

}  // namespace tpserve
