// Shared by the GPU benchmarks: CUDA-event timing and the one results-table
// row format scripts/gpu_check.sh collects:
//
//   | bench: <case> | ok | <ours> | <baseline> | <ratio> |
//
//   double ms = TimeMs(stream, Work{.bytes = b, .flops = f, .peak_flops = kH100CudaCoreFlops},
//                      [&] { (void)Gemm(p, s); });
//   PrintRow("gemm bf16 m=1 n=576 k=576", "ok", Fmt("%.2f TFLOP/s", t), Fmt("cuBLAS %.2f TFLOP/s",
//   b), t / b);
//
// Model mode: built for the CUDA emulator with its memory-transaction model
// (scripts/gpu_model.sh --kernels), TimeMs runs `launch` once, counted, and
// returns the MODELLED H100 time instead of a measured one, and PrintRow
// prints "<what>\tmodel <ours>", a kernels/cuda/model_h100.tsv line: the same
// rows from the same code, predicted.
#ifndef TPSERVE_KERNELS_CUDA_BENCH_UTIL_H_
#define TPSERVE_KERNELS_CUDA_BENCH_UTIL_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <string>

#if defined(TPSERVE_EMU_MEMORY_MODEL)
#include "kernels/cuda/emu/memory_model.h"
#endif

namespace tpserve::kernels::cuda {

// H100 SXM5 datasheet rates for the model's time: HBM3 3.35 TB/s; dense
// bf16 tensor cores 989 TFLOP/s; f32 FMA on CUDA cores 67 TFLOP/s. L1: 132
// SMs at 1.98 GHz, one 128-byte wavefront per clock each (the constants of
// scripts/gpu_model_report.py).
inline constexpr double kH100HbmBytesPerS = 3.35e12;
inline constexpr double kH100TensorCoreFlops = 989e12;
inline constexpr double kH100CudaCoreFlops = 67e12;
inline constexpr double kH100L1BytesPerS = 132 * 1.98e9 * 128;

// What one call of a benchmarked launch must do at least: bytes to or from
// HBM (each once) and flops, at `peak_flops`. Only the model reads it.
struct Work {
  double bytes = 0.0;
  double flops = 0.0;
  double peak_flops = kH100CudaCoreFlops;
};

#if defined(TPSERVE_EMU_MEMORY_MODEL)
// The model's time for one call: max(work.bytes at HBM bandwidth, the
// 128-byte lines the launch requested at the L1 wavefront rate, work.flops
// at its peak). Latency, occupancy and launch overhead are not modelled.
template <typename Launch>
double TimeMs(cudaStream_t stream, const Work& work, Launch&& launch, int = 0, double = 0.0) {
  ::tpserve_emu::ModelStart("bench");
  launch();
  cudaStreamSynchronize(stream);
  ::tpserve_emu::ModelStop();
  const double l1_s = ::tpserve_emu::ModelLinesSinceStart() * 128.0 / kH100L1BytesPerS;
  return 1e3 * std::max({work.bytes / kH100HbmBytesPerS, l1_s, work.flops / work.peak_flops});
}
#else
// Mean milliseconds per call of `launch` on `stream`: two warm-up calls, then
// batches until at least `min_iters` calls and `min_ms` elapsed. `work` is
// for the model mode.
template <typename Launch>
double TimeMs(cudaStream_t stream, const Work&, Launch&& launch, int min_iters = 10,
              double min_ms = 25.0) {
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
#endif

inline std::string Fmt(const char* format, ...) {
  char buf[256];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof(buf), format, args);
  va_end(args);
  return buf;
}

// One row of the results table. ratio < 0 prints "n/a". Model mode: the
// model_h100.tsv line of the row (rows without a number print nothing).
inline void PrintRow(const std::string& what, const std::string& status, const std::string& ours,
                     const std::string& baseline, double ratio) {
#if defined(TPSERVE_EMU_MEMORY_MODEL)
  (void)status, (void)baseline, (void)ratio;
  if (!ours.empty()) std::printf("%s\tmodel %s\n", what.c_str(), ours.c_str());
#else
  std::printf("| bench: %s | %s | %s | %s | %s |\n", what.c_str(), status.c_str(), ours.c_str(),
              baseline.c_str(), ratio < 0 ? "n/a" : Fmt("%.2f", ratio).c_str());
#endif
  std::fflush(stdout);
}

// D2D cudaMemcpy bandwidth (bytes read + written per second) over `bytes`:
// the bandwidth baseline every memory-bound benchmark is divided by.
inline double MeasureCopyBandwidth(cudaStream_t stream, size_t bytes) {
  void* a = nullptr;
  void* b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) return -1.0;
  cudaMemsetAsync(a, 1, bytes, stream);
  const double ms = TimeMs(stream, Work{.bytes = 2.0 * static_cast<double>(bytes)},
                           [&] { cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream); });
  cudaFree(a);
  cudaFree(b);
  return 2.0 * static_cast<double>(bytes) / (ms * 1e-3);
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_BENCH_UTIL_H_
