// A captured decode-like sequence (RmsNorm -> Q4_1 Gemm -> Swiglu -> Gemm ->
// Add) replayed as a CUDA graph gives results
// bit-identical to running the same launches eagerly, including after the
// inputs are rewritten between replays. Tolerance: exact (same kernels, same
// inputs, deterministic reductions).
#include "kernels/cuda/cuda_graph.h"

#include <cuda_runtime.h>

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/test_support.h"

namespace tpserve::kernels::cuda {
namespace {

using cpu::Rng;

TEST(CudaGraphTest, ReplayMatchesEagerLaunches) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(31);
  const int rows = 4, hidden = 576, ffn = 1536;
  DeviceBuffer<float> x = ToDevice(rng.Floats(rows * hidden));
  DeviceBuffer<float> norm_w = ToDevice(rng.Floats(hidden));
  DeviceBuffer<uint8_t> w_gu = ToDeviceWeight(DType::kQ4_1, 2 * ffn, hidden,
                                              cpu::RandomRows(rng, DType::kQ4_1, 2 * ffn, hidden));
  DeviceBuffer<uint8_t> w_down =
      ToDeviceWeight(DType::kQ4_1, hidden, ffn, cpu::RandomRows(rng, DType::kQ4_1, hidden, ffn));
  DeviceBuffer<float> h = DeviceZeros<float>(rows * hidden);
  DeviceBuffer<float> gu = DeviceZeros<float>(rows * 2 * ffn);
  DeviceBuffer<float> act = DeviceZeros<float>(rows * ffn);
  DeviceBuffer<float> down = DeviceZeros<float>(rows * hidden);
  DeviceBuffer<float> out = DeviceZeros<float>(rows * hidden);

  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  const Stream s{.cuda_stream = stream};
  auto step = [&]() -> absl::Status {
    if (absl::Status st = RmsNorm(
            {.x = x.data(), .weight = norm_w.data(), .y = h.data(), .rows = rows, .dim = hidden},
            s);
        !st.ok()) {
      return st;
    }
    if (absl::Status st = Gemm({.x = h.data(),
                                .w = w_gu.data(),
                                .w_dtype = DType::kQ4_1,
                                .y = gu.data(),
                                .m = rows,
                                .n = 2 * ffn,
                                .k = hidden},
                               s);
        !st.ok()) {
      return st;
    }
    if (absl::Status st = Swiglu({.gate = gu.data(),
                                  .up = gu.data() + ffn,
                                  .out = act.data(),
                                  .rows = rows,
                                  .dim = ffn,
                                  .gate_stride = 2 * ffn,
                                  .up_stride = 2 * ffn},
                                 s);
        !st.ok()) {
      return st;
    }
    if (absl::Status st = Gemm({.x = act.data(),
                                .w = w_down.data(),
                                .w_dtype = DType::kQ4_1,
                                .y = down.data(),
                                .m = rows,
                                .n = hidden,
                                .k = ffn},
                               s);
        !st.ok()) {
      return st;
    }
    return Add({.a = x.data(), .b = down.data(), .y = out.data(), .n = rows * hidden}, s);
  };

  // `stream` is non-blocking: the legacy-stream copies and memsets below
  // (ToHostVector, Zero, cudaMemcpy) are ordered with it only by explicit
  // synchronisation.
  ASSERT_TRUE(step().ok());
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const std::vector<float> eager = ToHostVector(out);
  absl::StatusOr<CudaGraph> graph = CudaGraph::Capture(stream, step);
  ASSERT_TRUE(graph.ok()) << graph.status();
  ASSERT_TRUE(out.Zero().ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_TRUE(graph->Launch(stream).ok());
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(ToHostVector(out), eager);

  // New inputs in the same buffers: the replay sees them.
  const std::vector<float> x2 = rng.Floats(rows * hidden);
  ASSERT_EQ(cudaMemcpy(x.data(), x2.data(), x2.size() * sizeof(float), cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_TRUE(step().ok());
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const std::vector<float> eager2 = ToHostVector(out);
  EXPECT_NE(eager2, eager);
  ASSERT_TRUE(out.Zero().ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_TRUE(graph->Launch(stream).ok());
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(ToHostVector(out), eager2);
  cudaStreamDestroy(stream);
}

TEST(CudaGraphTest, FailedBodyEndsCaptureAndReportsItsError) {
  TPS_SKIP_WITHOUT_CUDA();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  absl::StatusOr<CudaGraph> graph =
      CudaGraph::Capture(stream, [] { return absl::InvalidArgumentError("bad shape"); });
  EXPECT_EQ(graph.status().code(), absl::StatusCode::kInvalidArgument);
  cudaStreamCaptureStatus capturing;
  ASSERT_EQ(cudaStreamIsCapturing(stream, &capturing), cudaSuccess);
  EXPECT_EQ(capturing, cudaStreamCaptureStatusNone);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace tpserve::kernels::cuda
