// Sampler: turns one sequence's logits into its next token, on rank 0.
//
// Order (vLLM's): repetition penalty over prompt + output tokens (positive
// logits divided, negative multiplied), frequency and presence penalties over
// output tokens; then greedy argmax when temperature == 0 (ties -> lowest id),
// else logits / temperature, top-k, softmax, top-p (smallest prefix of the
// sorted distribution reaching p), min-p (probability >= min_p * max), and an
// inverse-CDF draw.
// Logprobs are the log-softmax of the penalised, temperature-scaled logits
// (before top-k/p/min-p truncation, so alternatives keep finite values).
//
// Randomness is a pure function of (seed, position of the sampled token): no
// RNG stream is shared between sequences or steps, so a sequence's output
// does not depend on what else is in the batch or how its prefill was
// chunked, and the same seed gives the same output.
//
//   TokenHistory h{.prompt = {1, 2, 3}, .output = {}};
//   TPS_ASSIGN_OR_RETURN(SampledToken t, SampleToken(logits, params, h, /*position=*/3));
#ifndef TPSERVE_WORKER_ENGINE_SAMPLER_H_
#define TPSERVE_WORKER_ENGINE_SAMPLER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "worker/engine/step_types.h"

namespace tpserve {

struct TokenHistory {
  std::vector<int32_t> prompt;  // prompt tokens seen so far
  std::vector<int32_t> output;  // generated tokens
};

// INVALID_ARGUMENT naming the field when a parameter is out of range.
[[nodiscard]] absl::Status ValidateSamplingParams(const SamplingParams& p);

// Samples the token at absolute position `position` from `logits` (one entry
// per vocabulary id). seq_id of the result is left 0.
[[nodiscard]] absl::StatusOr<SampledToken> SampleToken(absl::Span<const float> logits,
                                                       const SamplingParams& params,
                                                       const TokenHistory& history,
                                                       int64_t position);

// Whether `params` reads the token history (a penalty is active); without
// one, an empty TokenHistory samples the same token.
bool UsesHistory(const SamplingParams& params);

// The uniform [0, 1) draw used for (seed, position); exposed for tests.
double SampleUniform(uint64_t seed, int64_t position);

// `history` as the device sampler (kernels/cuda/sampling.h) takes it: each
// distinct token once, ascending, appended to `tokens`, with how often it
// occurs in the output appended to `output_counts` (0 = prompt only).
void AppendDistinctHistory(const TokenHistory& history, std::vector<int32_t>* tokens,
                           std::vector<int32_t>* output_counts);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_SAMPLER_H_
