// Token sampling on the GPU: the algorithm of worker/engine/sampler.cc (the
// CPU twin) for a batch of logits rows, without sorting the vocabulary.
// Penalties (repetition over prompt + output, frequency and presence over
// output), temperature, then greedy argmax (temperature 0, ties to the lowest
// id) or top-k, min-p / the exp(-30) floor, top-p and an inverse-CDF draw in
// the sampler's sorted order. Every cut is a threshold on a 64-bit key
// (ordered logit bits, then inverted token id) found by a bitwise binary
// search of block-wide sums, so "sorted order with ties to the lowest id" is
// reproduced exactly; probabilities are summed in double like the CPU.
// The searches run over the candidates (keys at or above the min-p / exp(-30)
// floor and the top-k cut) compacted in token order into shared memory when
// there are at most 2048 of them: a row then reads its logits in 4 or 5
// vocabulary passes instead of up to 197 (3 searches x 64 bits); only a flat
// distribution without top-k or min-p searches the vocabulary itself.
// Logprobs are not computed here (the CPU sampler does them).
//
//   std::vector<SampleRow> rows = ...;  // per row: params, history range, uniform
//   rows[i].uniform = SampleUniform(seed, position);  // worker/engine/sampler.h
//   SampleParams p{.logits = d_logits, .row_params = d_rows, ..., .rows = n, .vocab = v};
//   TPS_RETURN_IF_ERROR(cuda::Sample(p, stream));  // p.ids[i] = token of row i
#ifndef TPSERVE_KERNELS_CUDA_SAMPLING_H_
#define TPSERVE_KERNELS_CUDA_SAMPLING_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/sampling_params.h"
#include "kernels/ops.h"

namespace tpserve::kernels::cuda {

// One row: its sampling parameters (the engine validates them first; the
// kernel reads the temperature, top-k/p, min-p and penalty fields), its
// history range and its draw.
struct SampleRow {
  SamplingParams params = {};
  int32_t history_begin = 0;  // this row's entries in SampleParams::history_*
  int32_t history_end = 0;
  double uniform = 0.0;  // the row's [0, 1) draw, SampleUniform(seed, position)
};

struct SampleParams {
  float* logits = nullptr;                // (rows, vocab); overwritten with the penalised,
                                          // temperature-scaled logits
  int64_t stride = 0;                     // floats between rows; 0 = vocab
  const SampleRow* row_params = nullptr;  // (rows), device memory
  // Each row's DISTINCT previously seen tokens (prompt or output) and how often
  // each occurs in the output (0 = prompt only), at [history_begin, history_end).
  const int32_t* history_tokens = nullptr;
  const int32_t* history_output_counts = nullptr;
  double* workspace = nullptr;  // (rows, vocab) doubles
  int32_t* ids = nullptr;       // (rows) sampled token ids
  int rows = 0;
  int vocab = 0;
};

[[nodiscard]] absl::Status Sample(const SampleParams& p, const Stream& stream);

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_SAMPLING_H_
