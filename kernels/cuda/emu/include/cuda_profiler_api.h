// The CUDA emulator's cuda_profiler_api.h: no profiler runs here, so the
// range calls do nothing (decode_bench --profile_steps marks its range).
#ifndef TPSERVE_KERNELS_CUDA_EMU_INCLUDE_CUDA_PROFILER_API_H_
#define TPSERVE_KERNELS_CUDA_EMU_INCLUDE_CUDA_PROFILER_API_H_

#include "cuda_runtime.h"

inline cudaError_t cudaProfilerStart() { return cudaSuccess; }
inline cudaError_t cudaProfilerStop() { return cudaSuccess; }

#endif  // TPSERVE_KERNELS_CUDA_EMU_INCLUDE_CUDA_PROFILER_API_H_
