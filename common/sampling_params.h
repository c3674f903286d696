// SamplingParams: how one sequence picks its next token, the one C++
// definition the router (scheduler, serving loop), the engine (host sampler)
// and the CUDA sampling kernel (kernels/cuda/sampling.h SampleRow) share.
// Dependency-free. The protos carry it as tpserve.v1.SamplingParameters
// (public API, optional fields) and tpserve.v1.WorkerSampling (router to
// worker); proto/convert/sampling_convert.h converts both, and its test fails
// when a field here or in either message is added without a conversion.
//
//   SamplingParams p;                // greedy
//   p.temperature = 0.7f;
//   p.top_p = 0.9f;
//   p.seed = 42;                     // same seed + same sequence = same output
#ifndef TPSERVE_COMMON_SAMPLING_PARAMS_H_
#define TPSERVE_COMMON_SAMPLING_PARAMS_H_

#include <cstdint>

namespace tpserve {

struct SamplingParams {
  float temperature = 0.0f;         // 0 = greedy (argmax)
  int32_t top_k = 0;                // 0 = off
  float top_p = 1.0f;               // (0, 1]; 1 = off
  float min_p = 0.0f;               // [0, 1]; 0 = off
  float repetition_penalty = 1.0f;  // > 0; 1 = off; over prompt + output tokens
  float presence_penalty = 0.0f;    // over output tokens
  float frequency_penalty = 0.0f;   // over output tokens
  uint64_t seed = 0;                // same seed + same sequence = same output
  int32_t top_logprobs = 0;         // alternatives to return per token (0..20)
  bool logprobs = false;            // return the sampled token's logprob

  friend bool operator==(const SamplingParams&, const SamplingParams&) = default;
};

}  // namespace tpserve

#endif  // TPSERVE_COMMON_SAMPLING_PARAMS_H_
