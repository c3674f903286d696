#include "proto/convert/sampling_convert.h"

namespace tpserve {

SamplingParams SamplingFromRequest(const v1::SamplingParameters& s, uint64_t seed_if_unset) {
  SamplingParams p;
  if (s.has_temperature()) p.temperature = s.temperature();
  if (s.has_top_k()) p.top_k = s.top_k();
  if (s.has_top_p()) p.top_p = s.top_p();
  if (s.has_min_p()) p.min_p = s.min_p();
  if (s.has_repetition_penalty()) p.repetition_penalty = s.repetition_penalty();
  if (s.has_presence_penalty()) p.presence_penalty = s.presence_penalty();
  if (s.has_frequency_penalty()) p.frequency_penalty = s.frequency_penalty();
  p.seed = s.has_seed() ? s.seed() : seed_if_unset;
  p.top_logprobs = s.top_logprobs();
  p.logprobs = s.logprobs();
  return p;
}

void SamplingToWorker(const SamplingParams& p, v1::WorkerSampling* out) {
  out->set_temperature(p.temperature);
  out->set_top_k(p.top_k);
  out->set_top_p(p.top_p);
  out->set_min_p(p.min_p);
  out->set_repetition_penalty(p.repetition_penalty);
  out->set_presence_penalty(p.presence_penalty);
  out->set_frequency_penalty(p.frequency_penalty);
  out->set_seed(p.seed);
  out->set_top_logprobs(p.top_logprobs);
  out->set_logprobs(p.logprobs);
}

SamplingParams SamplingFromWorker(const v1::WorkerSampling& s) {
  SamplingParams p;
  p.temperature = s.temperature();
  p.top_k = s.top_k();
  p.top_p = s.top_p();
  p.min_p = s.min_p();
  p.repetition_penalty = s.repetition_penalty();
  p.presence_penalty = s.presence_penalty();
  p.frequency_penalty = s.frequency_penalty();
  p.seed = s.seed();
  p.top_logprobs = s.top_logprobs();
  p.logprobs = s.logprobs();
  return p;
}

}  // namespace tpserve
