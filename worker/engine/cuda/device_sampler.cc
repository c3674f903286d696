#include "worker/engine/cuda/device_sampler.h"

#include "common/status.h"
#include "kernels/cuda/cuda_status.h"
#include "worker/engine/cuda/device_weights.h"

namespace tpserve {

namespace kc = kernels::cuda;

absl::Status DeviceSampler::Sample(const HeadLogits& head, const DeviceSampling& sampling,
                                   cudaStream_t stream, std::vector<int32_t>* tokens) {
  const int R = head.rows;
  const int V = head.vocab;
  const int64_t maxv = head.plan->max_vocab_rows();
  const int64_t slice_rows = head.slice_rows > 0 ? head.slice_rows : R;
  if (static_cast<int>(sampling.params.size()) != R ||
      static_cast<int>(sampling.uniforms.size()) != R ||
      static_cast<int>(sampling.history_begin.size()) != R + 1) {
    return absl::InvalidArgumentError("ForwardSample: one sampling row per head row is needed");
  }
  // (R, V) logits: the head output itself on one rank (row stride maxv = V),
  // else each rank's gathered slice copied into its vocabulary columns.
  float* logits = head.head_out;
  if (head.world > 1) {
    TPS_RETURN_IF_ERROR(Grow(logits_, static_cast<size_t>(R) * V, &moves_));
    logits = logits_.data();
    for (int rk = 0; rk < head.world; ++rk) {
      const IndexRange& v = head.plan->shard(rk).vocab;
      TPS_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(
          logits + v.begin, sizeof(float) * V, head.gathered + int64_t{rk} * slice_rows * maxv,
          sizeof(float) * maxv, sizeof(float) * v.count, R, cudaMemcpyDeviceToDevice, stream));
    }
  }
  std::vector<kc::SampleRow> rows(R);
  for (int r = 0; r < R; ++r) {
    rows[r] = {.params = sampling.params[r],
               .history_begin = sampling.history_begin[r],
               .history_end = sampling.history_begin[r + 1],
               .uniform = sampling.uniforms[r]};
  }
  // `rows` dies when this returns, before the stream runs the uploads.
  TPS_RETURN_IF_ERROR(staging_.Begin(StagedBytes(rows) + StagedBytes(sampling.history_tokens) +
                                     StagedBytes(sampling.history_output_counts)));
  TPS_RETURN_IF_ERROR(staging_.Stage(rows, rows_, stream, &moves_));
  TPS_RETURN_IF_ERROR(staging_.Stage(sampling.history_tokens, hist_tokens_, stream, &moves_));
  TPS_RETURN_IF_ERROR(
      staging_.Stage(sampling.history_output_counts, hist_counts_, stream, &moves_));
  TPS_RETURN_IF_ERROR(staging_.End(stream));
  TPS_RETURN_IF_ERROR(Grow(workspace_, static_cast<size_t>(R) * V, &moves_));
  TPS_RETURN_IF_ERROR(Grow(ids_, static_cast<size_t>(R), &moves_));
  TPS_RETURN_IF_ERROR(kc::Sample({.logits = logits,
                                  .stride = head.world > 1 ? V : maxv,
                                  .row_params = rows_.data(),
                                  .history_tokens = hist_tokens_.data(),
                                  .history_output_counts = hist_counts_.data(),
                                  .workspace = workspace_.data(),
                                  .ids = ids_.data(),
                                  .rows = R,
                                  .vocab = V},
                                 {.cuda_stream = stream}));
  tokens->resize(R);
  TPS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(tokens->data(), ids_.data(), sizeof(int32_t) * R,
                                           cudaMemcpyDeviceToHost, stream));
  return absl::OkStatus();
}

}  // namespace tpserve
