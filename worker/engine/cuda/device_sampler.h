// Rank 0's sampling on the device for the CUDA backend: stages each row's
// parameters (kernels/cuda/sampling.h's SampleRow), the rows' distinct
// history tokens and the full-vocabulary logits, runs the sampling kernel and
// copies the sampled ids back, all on the step's stream. Its buffers grow on
// demand and are never captured in a graph.
//
//   DeviceSampler sampler;
//   TPS_RETURN_IF_ERROR(sampler.Sample({.head_out = head_out, .gathered = gathered, ...},
//                                      sampling, stream, &tokens));
//   // tokens are valid once the stream is synchronised.
#ifndef TPSERVE_WORKER_ENGINE_CUDA_DEVICE_SAMPLER_H_
#define TPSERVE_WORKER_ENGINE_CUDA_DEVICE_SAMPLER_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/sampling.h"
#include "worker/engine/cuda/pinned_staging.h"
#include "worker/engine/forward_backend.h"
#include "worker/engine/shard_plan.h"

namespace tpserve {

// Where the step left the LM-head output of its R sampled rows.
struct HeadLogits {
  const ShardPlan* plan = nullptr;
  int world = 1;
  int rows = 0;   // R
  int vocab = 0;  // V, the full vocabulary
  // World 1: (R, plan->max_vocab_rows()) rows, overwritten by the sampler.
  float* head_out = nullptr;
  // World > 1: (world, slice_rows, plan->max_vocab_rows()), each rank's
  // padded slice; its first R rows are the sampled ones.
  const float* gathered = nullptr;
  // Rows of each rank's slice: R, or the batch bucket of a step replayed
  // from a graph (padding rows follow the R sampled ones). 0 means R.
  int slice_rows = 0;
};

class DeviceSampler {
 public:
  // Enqueues sampling of every row of `head` on `stream` and an async copy
  // of the ids into `tokens` (resized to R); the caller synchronises the
  // stream before reading them. `sampling` has one entry per row.
  [[nodiscard]] absl::Status Sample(const HeadLogits& head, const DeviceSampling& sampling,
                                    cudaStream_t stream, std::vector<int32_t>* tokens);

 private:
  kernels::cuda::DeviceBuffer<kernels::cuda::SampleRow> rows_;
  kernels::cuda::DeviceBuffer<int32_t> hist_tokens_, hist_counts_, ids_;
  kernels::cuda::DeviceBuffer<float> logits_;  // (R, V), multi-rank only
  kernels::cuda::DeviceBuffer<double> workspace_;
  uint64_t moves_ = 0;  // reallocations (nothing captures these buffers)
  PinnedStagingRing staging_;
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_CUDA_DEVICE_SAMPLER_H_
