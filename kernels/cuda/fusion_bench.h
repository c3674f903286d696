// The kernels of fusion_bench (a GPU benchmark, not on the engine's path):
// a batch-1 decode step's chain of dependent GEMVs run either as one kernel
// per GEMV or inside one persistent kernel with grid barriers between
// them, so a device run measures what a kernel boundary costs against a
// grid barrier (the question behind fusing a whole decode step into one
// kernel). See fusion_bench.cc.
#ifndef TPSERVE_KERNELS_CUDA_FUSION_BENCH_H_
#define TPSERVE_KERNELS_CUDA_FUSION_BENCH_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_ops.h"

namespace tpserve::kernels::cuda::fusion_bench {

// How a phase combines its rows' dot products into `out`.
enum class Op : int {
  kStore,   // out[r] = dot_r
  kSwiglu,  // out[r] = silu(dot_r) * dot_{r + rows}: w holds 2 * rows rows
};

// One GEMV of the chain: out = f(w . in), w rows x k 4-bit values
// ((nibble - 8) * scale[row], low nibble first, k / 2 bytes per row, rows
// 16-byte aligned), in k floats. k is a multiple of 32.
struct Phase {
  const uint8_t* w;
  const float* scale;
  const float* in;
  float* out;
  int rows;
  int k;
  Op op;
  // Prefetched into L2 while the phase runs (the next phase's weights, or
  // nothing): by each per-phase kernel before its wait for the one before
  // it, by the persistent kernel at the phase's start.
  L2Prefetch prefetch = {};
};

// Threads per block of every kernel here.
inline constexpr int kThreads = 256;

// Dynamic shared memory for phases of width up to k.
inline size_t SharedBytes(int max_k) { return sizeof(float) * static_cast<size_t>(max_k); }

// One kernel per phase (one warp per row), programmatic launches when
// `programmatic` (each kernel waits for the one before it inside, before
// reading its input). Errors: cudaGetLastError after the last launch.
cudaError_t LaunchPerPhase(const Phase* phases, int n, int max_k, cudaStream_t stream,
                           bool programmatic);
// The same launches with empty kernels of the same grids: the boundaries alone.
cudaError_t LaunchEmptyPerPhase(const Phase* phases, int n, cudaStream_t stream, bool programmatic);
// Blocks of the persistent kernel that fit on the device at once (0 if
// cooperative launches are not supported).
int PersistentBlocks(int max_k);
// All n phases in one cooperative kernel of `blocks` blocks, a grid barrier
// after each; d_phases: the n phases in device memory.
cudaError_t LaunchPersistent(const Phase* d_phases, int n, int max_k, int blocks,
                             cudaStream_t stream);
// n grid barriers and nothing else.
cudaError_t LaunchBarriers(int n, int blocks, cudaStream_t stream);

}  // namespace tpserve::kernels::cuda::fusion_bench

#endif  // TPSERVE_KERNELS_CUDA_FUSION_BENCH_H_
