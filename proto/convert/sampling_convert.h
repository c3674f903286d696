// SamplingParams (common/sampling_params.h) to and from its two protos: the
// public tpserve.v1.SamplingParameters (router/api, once per request; unset
// optional fields keep the defaults) and tpserve.v1.WorkerSampling (the
// serving loop writes it into every Step, the worker service reads it back).
// sampling_convert_test fails when either message or the struct gains a
// field these functions do not carry.
//
//   SamplingParams p = SamplingFromRequest(request.sampling(), /*seed_if_unset=*/rng());
//   SamplingToWorker(p, step_seq->mutable_sampling());
//   SamplingParams back = SamplingFromWorker(step_seq.sampling());  // == p
#ifndef TPSERVE_PROTO_CONVERT_SAMPLING_CONVERT_H_
#define TPSERVE_PROTO_CONVERT_SAMPLING_CONVERT_H_

#include <cstdint>

#include "common/sampling_params.h"
#include "proto/tpserve/v1/generation.pb.h"
#include "proto/tpserve/v1/worker.pb.h"

namespace tpserve {

// A validated request's parameters (router/api/request_validation.h checks
// the ranges); `seed_if_unset` is the seed when the request names none.
SamplingParams SamplingFromRequest(const v1::SamplingParameters& s, uint64_t seed_if_unset);

void SamplingToWorker(const SamplingParams& p, v1::WorkerSampling* out);
SamplingParams SamplingFromWorker(const v1::WorkerSampling& s);

}  // namespace tpserve

#endif  // TPSERVE_PROTO_CONVERT_SAMPLING_CONVERT_H_
