// What every ForwardBackend computes the same way, whatever the hardware:
// the StepBatch flattened into per-token arrays (positions, KV slots, segment
// offsets, padded block tables), this rank's layer dimensions, the kernel
// parameter structs of kernels/ops.h built from them, and the assembly of
// rank 0's full-vocabulary logits from the gathered vocab-parallel LM-head
// slices. Backends differ only in where the buffers live and which launchers
// run (kernels/cpu or kernels/cuda).
//
//   StepLayout layout = FlattenStep(batch, block_size);   // host arrays
//   RankDims d = RankDims::For(config, plan.mine());
//   StepArrays a = layout.HostArrays();                    // or device copies
//   TPS_RETURN_IF_ERROR(cpu::Rope(MakeRopeParams(config, d, a, qkv), stream));
#ifndef TPSERVE_WORKER_ENGINE_FORWARD_COMMON_H_
#define TPSERVE_WORKER_ENGINE_FORWARD_COMMON_H_

#include <cstdint>
#include <vector>

#include "kernels/ops.h"
#include "worker/engine/shard_plan.h"
#include "worker/engine/step_types.h"
#include "worker/model/model_config.h"

namespace tpserve {

// Pointers to the flattened step arrays wherever they live (host or device).
struct StepArrays {
  const int32_t* tokens = nullptr;     // (T)
  const int32_t* positions = nullptr;  // (T)
  const int64_t* slots = nullptr;      // (T) block_id * block_size + offset
  const int32_t* cu_q = nullptr;       // (S + 1)
  const int32_t* starts = nullptr;     // (S)
  const int32_t* tables = nullptr;     // (S, max_blocks)
  int num_seqs = 0;                    // S
  int num_tokens = 0;                  // T
  int max_blocks = 1;
};

// A ragged StepBatch as flat host arrays, sequences in batch order.
struct StepLayout {
  std::vector<int32_t> tokens;     // (T) token ids
  std::vector<int32_t> positions;  // (T) absolute positions
  std::vector<int64_t> slots;      // (T) KV slot of each token
  std::vector<int32_t> cu_q;       // (S + 1) prefix sums of sequence lengths
  std::vector<int32_t> starts;     // (S) start_pos of each sequence
  std::vector<int32_t> tables;     // (S, max_blocks) block tables, zero-padded
  int max_blocks = 1;              // blocks covering the longest sequence
  int max_context = 1;             // longest start_pos + tokens
  bool all_decode = true;          // every sequence carries one token

  int num_seqs() const { return static_cast<int>(starts.size()); }
  int num_tokens() const { return static_cast<int>(tokens.size()); }
  StepArrays HostArrays() const;
};

// The batch must be validated (block tables cover every position).
StepLayout FlattenStep(const StepBatch& batch, int block_size);

// One rank's slice of a transformer layer.
struct RankDims {
  int hidden = 0;      // H
  int head_dim = 0;    // hd
  int n_heads = 0;     // local query heads
  int n_kv_heads = 0;  // local KV heads
  int q_dim = 0;       // n_heads * hd
  int kv_dim = 0;      // n_kv_heads * hd
  int qkv_dim = 0;     // q_dim + 2 * kv_dim: row length of the fused QKV output
  int ffn = 0;         // local FFN width F

  static RankDims For(const ModelConfig& config, const RankShard& shard);
};

// Columns per fixed-point partial (GemmParams::fixed_chunk) of the
// row-parallel projections in tensor-parallel-invariant mode: a chunk must
// never straddle a rank boundary at any world size, so it divides the split
// unit (head_dim for O, FfnSplitUnit for down); at most 32, the quantization
// block, which quantized weights always use.
struct RowParallelChunks {
  int o = 32;
  int down = 32;
  static RowParallelChunks For(const ModelConfig& config);
};

// The paged KV cache of one layer as the kernels see it.
struct LayerKvCache {
  void* k = nullptr;  // (num_blocks, block_size, n_kv_heads, head_dim) in dtype
  void* v = nullptr;
  int block_size = 0;
  int num_blocks = 0;
  DType dtype = DType::kF32;  // kF32 or kBF16 (kernels/ops.h kv_dtype)
};

// (T, H) embedding of this rank's vocabulary slice into `out`.
kernels::EmbeddingParams MakeEmbeddingParams(const RankShard& shard, int hidden, const void* table,
                                             DType dtype, const StepArrays& a, float* out);
// RoPE in place on the q and k parts of `qkv` (T, qkv_dim).
kernels::RopeParams MakeRopeParams(const ModelConfig& config, const RankDims& d,
                                   const StepArrays& a, float* qkv);
// Writes the k and v parts of `qkv` into the cache at the step's slots.
kernels::KvCacheWriteParams MakeKvCacheWriteParams(const RankDims& d, const StepArrays& a,
                                                   const float* qkv, const LayerKvCache& kv);
// Attention of the q part of `qkv` over the cache into `out` (T, q_dim).
kernels::PagedAttentionParams MakeAttentionParams(const RankDims& d, const StepArrays& a,
                                                  const float* qkv, const LayerKvCache& kv,
                                                  float* out);

// Rank 0: `gathered` holds every rank's LM-head output, (world, slice_rows,
// padded) with rank r's columns plan.shard(r).vocab; fills `logits` (rows,
// vocab) from the first `rows` rows of each slice (slice_rows >= rows: a
// padded decode batch leaves padding rows after them).
void ScatterVocabSlices(const ShardPlan& plan, const float* gathered, int rows, int slice_rows,
                        int64_t padded, int vocab, std::vector<float>* logits);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_FORWARD_COMMON_H_
