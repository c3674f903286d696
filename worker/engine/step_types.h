// Plain data crossing the engine boundary: one forward step over a ragged
// batch, and what it returns. The worker service converts worker.proto
// messages to these; the engine never sees protos.
//
//   StepBatch batch;
//   batch.seqs.push_back({.seq_id = 7, .tokens = {1, 2, 3}, .start_pos = 0,
//                         .prompt_len = 3, .block_table = {4}, .sample = true});
//   absl::StatusOr<StepOutput> out = engine.Step(batch);
#ifndef TPSERVE_WORKER_ENGINE_STEP_TYPES_H_
#define TPSERVE_WORKER_ENGINE_STEP_TYPES_H_

#include <cstdint>
#include <vector>

#include "common/sampling_params.h"

namespace tpserve {

// One sequence's slice of a step: a prefill chunk (tokens.size() >= 1 at any
// start_pos) or a single decode token.
struct SequenceInput {
  uint64_t seq_id = 0;
  std::vector<int32_t> tokens;       // new tokens to run, at positions start_pos...
  int32_t start_pos = 0;             // position of tokens[0]; KV for [0, start_pos) is cached
  int32_t prompt_len = 0;            // tokens at positions < prompt_len are prompt (penalties)
  std::vector<int32_t> block_table;  // KV block ids covering [0, start_pos + tokens.size())
  bool sample = true;                // false for a prefill chunk that is not the last
  SamplingParams sampling;
};

struct StepBatch {
  std::vector<SequenceInput> seqs;
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampledToken {
  uint64_t seq_id = 0;
  int32_t token = 0;
  float logprob = 0.0f;                    // set when sampling.logprobs
  std::vector<TokenLogprob> top_logprobs;  // sampling.top_logprobs entries, best first
};

// One entry per sequence with sample == true, in batch order. Only rank 0
// fills it; other ranks return an empty vector.
struct StepOutput {
  std::vector<SampledToken> tokens;
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_STEP_TYPES_H_
