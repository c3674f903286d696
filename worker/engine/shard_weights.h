// ShardWeights: the slice of every weight one tensor-parallel rank needs,
// read from a ModelSource according to its ShardPlan (Megatron layout):
//   column-parallel  attn_q/k/v rows (+ biases), ffn_gate/up rows
//   row-parallel     attn_output columns, ffn_down columns
//   vocab-parallel   token_embd rows, output rows (token_embd when tied)
//   replicated       norms
// Q/K/V are fused into one (q | k | v) linear and gate/up into (gate | up)
// when their dtypes match (one GEMM instead of three/two; same numbers, since
// each output row is its own dot product). Row slices are zero-copy views
// into the file mapping; column slices are copies.
//
//   TPS_ASSIGN_OR_RETURN(ShardWeights w, LoadShardWeights(*source, plan));
//   const Linear& qkv = w.layers[0].qkv;  // (q_local + 2 kv_local) * head_dim rows
#ifndef TPSERVE_WORKER_ENGINE_SHARD_WEIGHTS_H_
#define TPSERVE_WORKER_ENGINE_SHARD_WEIGHTS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "formats/dtype.h"
#include "worker/engine/shard_plan.h"
#include "worker/model/model_source.h"

namespace tpserve {

// One weight matrix (rows = output features, cols = input features) and the
// output columns it fills in a wider output row.
struct LinearPart {
  HostTensor weight;        // (rows, cols)
  std::vector<float> bias;  // (rows) or empty
  int out_offset = 0;       // first output column this part writes
};

// y = x W^T (+ b) over one or more parts side by side.
struct Linear {
  std::vector<LinearPart> parts;
  int out_features = 0;
  int in_features = 0;
};

struct LayerWeights {
  std::vector<float> attn_norm;  // (hidden)
  Linear qkv;                    // out: q (q_local*hd) | k (kv_local*hd) | v (kv_local*hd)
  Linear o;                      // (hidden, q_local*hd), row-parallel
  std::vector<float> ffn_norm;   // (hidden)
  Linear gate_up;                // out: gate (ffn_local) | up (ffn_local)
  Linear down;                   // (hidden, ffn_local), row-parallel
};

struct ShardWeights {
  HostTensor embedding;  // (vocab_local, hidden) rows plan.mine().vocab
  Linear lm_head;        // (vocab_local, hidden)
  std::vector<float> output_norm;
  std::vector<LayerWeights> layers;
  int64_t bytes = 0;  // weight bytes this rank references
};

// `dequantize`: convert quantized matrices to F32 so GEMMs run in plain f32
// (no 8-bit activation rounding; ~4-7x the weight memory). The embedding table
// stays as stored (a lookup is exact either way).
[[nodiscard]] absl::StatusOr<ShardWeights> LoadShardWeights(const ModelSource& source,
                                                            const ShardPlan& plan,
                                                            bool dequantize = false);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_SHARD_WEIGHTS_H_
