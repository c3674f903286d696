// Shared by the GPU benchmarks: CUDA-event timing and the one results-table
// row format scripts/gpu_check.sh collects:
//
//   | bench: <case> | ok | <ours> | <baseline> | <ratio> |
//
//   double ms = TimeMs(stream, [&] { (void)Gemm(p, s); });
//   PrintRow("gemm bf16 m=1 n=576 k=576", "ok", Fmt("%.2f TFLOP/s", t), Fmt("cuBLAS %.2f TFLOP/s",
//   b), t / b);
#ifndef TPSERVE_KERNELS_CUDA_BENCH_UTIL_H_
#define TPSERVE_KERNELS_CUDA_BENCH_UTIL_H_

#include <cuda_runtime.h>

#include <cstdarg>
#include <cstdio>
#include <string>

namespace tpserve::kernels::cuda {

// Mean milliseconds per call of `launch` on `stream`: two warm-up calls, then
// batches until at least `min_iters` calls and `min_ms` elapsed.
template <typename Launch>
double TimeMs(cudaStream_t stream, Launch&& launch, int min_iters = 10, double min_ms = 25.0) {
  launch();
  launch();
  cudaStreamSynchronize(stream);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  int iters = 0;
  float total = 0.0f;
  int batch = min_iters;
  while (iters < min_iters || total < min_ms) {
    cudaEventRecord(start, stream);
    for (int i = 0; i < batch; ++i) launch();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, start, stop);
    total += ms;
    iters += batch;
    if (iters > 100000) break;
    batch *= 2;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return total / iters;
}

inline std::string Fmt(const char* format, ...) {
  char buf[256];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof(buf), format, args);
  va_end(args);
  return buf;
}

// One row of the results table. ratio < 0 prints "n/a".
inline void PrintRow(const std::string& what, const std::string& status, const std::string& ours,
                     const std::string& baseline, double ratio) {
  std::printf("| bench: %s | %s | %s | %s | %s |\n", what.c_str(), status.c_str(), ours.c_str(),
              baseline.c_str(), ratio < 0 ? "n/a" : Fmt("%.2f", ratio).c_str());
  std::fflush(stdout);
}

// D2D cudaMemcpy bandwidth (bytes read + written per second) over `bytes`:
// the bandwidth baseline every memory-bound benchmark is divided by.
inline double MeasureCopyBandwidth(cudaStream_t stream, size_t bytes) {
  void* a = nullptr;
  void* b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) return -1.0;
  cudaMemsetAsync(a, 1, bytes, stream);
  const double ms =
      TimeMs(stream, [&] { cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream); });
  cudaFree(a);
  cudaFree(b);
  return 2.0 * static_cast<double>(bytes) / (ms * 1e-3);
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_BENCH_UTIL_H_
