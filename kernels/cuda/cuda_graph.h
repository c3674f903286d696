// CUDA-graph capture and replay of a sequence of launches, for the decode
// step: a SmolLM2 step is ~30 layers x ~12 kernels, each a few microseconds of
// launch overhead on the host, comparable to the kernels themselves at small
// batch. Capturing once per batch shape and replaying removes that overhead;
// it pays off when the same shapes repeat (decode at a fixed batch bucket),
// not for one-off prefill shapes.
//
// Every launcher in cuda_ops.h is capture-safe: no synchronisation, no
// allocation, device pointers and shapes fixed at capture time. Replays
// reuse those pointers and shapes, so callers keep their buffers alive and
// write new inputs into them before each Launch.
//
//   TPS_ASSIGN_OR_RETURN(CudaGraph graph, CudaGraph::Capture(stream, [&]() -> absl::Status {
//     TPS_RETURN_IF_ERROR(cuda::RmsNorm(norm_params, s));
//     return cuda::Gemm(gemm_params, s);
//   }));
//   TPS_RETURN_IF_ERROR(graph.Launch(stream));  // as often as needed
#ifndef TPSERVE_KERNELS_CUDA_CUDA_GRAPH_H_
#define TPSERVE_KERNELS_CUDA_CUDA_GRAPH_H_

#include <cuda_runtime.h>

#include <functional>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tpserve::kernels::cuda {

class CudaGraph {
 public:
  CudaGraph() = default;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  CudaGraph(CudaGraph&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}
  CudaGraph& operator=(CudaGraph&& other) noexcept {
    if (this != &other) {
      Reset();
      exec_ = std::exchange(other.exec_, nullptr);
    }
    return *this;
  }
  ~CudaGraph() { Reset(); }

  // Records everything `body` enqueues on `stream` (which must not be the
  // legacy default stream) into an executable graph. `body` runs once, in
  // capture mode: its launches do not execute. Capture uses the thread-local
  // mode, so other threads' CUDA calls are unaffected.
  static absl::StatusOr<CudaGraph> Capture(cudaStream_t stream,
                                           const std::function<absl::Status()>& body);

  // Enqueues one replay on `stream`.
  absl::Status Launch(cudaStream_t stream) const;

  bool valid() const { return exec_ != nullptr; }

 private:
  void Reset();
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_CUDA_GRAPH_H_
