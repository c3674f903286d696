#include "kernels/cuda/cuda_graph.h"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_status.h"

namespace tpserve::kernels::cuda {

absl::StatusOr<CudaGraph> CudaGraph::Capture(cudaStream_t stream,
                                             const std::function<absl::Status()>& body) {
  if (stream == nullptr)
    return absl::InvalidArgumentError("CudaGraph::Capture needs a non-default stream");
  TPS_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status body_status = body();
  cudaGraph_t graph = nullptr;
  // Always end the capture, even after a failed body, so the stream is usable again.
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (!body_status.ok()) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
    return body_status;
  }
  TPS_CUDA_RETURN_IF_ERROR(end);
  CudaGraph out;
  const cudaError_t inst = cudaGraphInstantiate(&out.exec_, graph, 0);
  cudaGraphDestroy(graph);
  TPS_CUDA_RETURN_IF_ERROR(inst);
  return out;
}

absl::Status CudaGraph::Launch(cudaStream_t stream) const {
  if (exec_ == nullptr) return absl::FailedPreconditionError("CudaGraph::Launch on an empty graph");
  return CudaStatus(cudaGraphLaunch(exec_, stream), "cudaGraphLaunch");
}

void CudaGraph::Reset() {
  if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
  exec_ = nullptr;
}

}  // namespace tpserve::kernels::cuda
