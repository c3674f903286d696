// fusion_bench's kernels (fusion_bench.h). The per-phase kernel and the
// persistent one run the same device code on each row (RowDot), so both
// should give the same bits (fusion_bench.cc compares them on every run);
// only what separates the phases differs.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cooperative.cuh"
#include "kernels/cuda/fusion_bench.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/prefetch.cuh"
#include "kernels/cuda/shared_memory.cuh"

namespace tpserve::kernels::cuda::fusion_bench {
namespace {

constexpr int kWarps = kThreads / 32;

// w_row . xs over k values: lane c takes 16-byte chunks c, c + 32, ... (32
// values each), as the engine's batch-1 GEMV does; the warp's sum.
__device__ __forceinline__ float RowDot(const uint8_t* w_row, const float* xs, int k, int lane) {
  const uint4* chunks = reinterpret_cast<const uint4*>(w_row);
  float acc = 0.0f;
  for (int c = lane; c < k / 32; c += 32) {
    const uint4 q = __ldg(chunks + c);
    const uint32_t words[4] = {q.x, q.y, q.z, q.w};
    const float* x = xs + c * 32;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        const uint32_t byte = (words[i] >> (8 * b)) & 0xFFu;
        acc = fmaf(static_cast<float>(static_cast<int>(byte & 15u) - 8), x[8 * i + 2 * b], acc);
        acc = fmaf(static_cast<float>(static_cast<int>(byte >> 4) - 8), x[8 * i + 2 * b + 1], acc);
      }
    }
  }
  return WarpSum(acc);
}

// The phase's input into shared memory (the block's threads, then a barrier).
__device__ __forceinline__ void Stage(const Phase& p, float* xs) {
  for (int i = threadIdx.x; i < p.k; i += blockDim.x) xs[i] = p.in[i];
  __syncthreads();
}

// Rows first_warp, first_warp + warps, ... of the phase, one warp each.
__device__ __forceinline__ void Rows(const Phase& p, const float* xs, int first_warp, int warps) {
  const int lane = threadIdx.x & 31;
  const int64_t row_bytes = p.k / 2;
  for (int r = first_warp; r < p.rows; r += warps) {
    const float d = p.scale[r] * RowDot(p.w + r * row_bytes, xs, p.k, lane);
    float v = d;
    if (p.op == Op::kSwiglu) {
      const float u = p.scale[r + p.rows] * RowDot(p.w + (r + p.rows) * row_bytes, xs, p.k, lane);
      v = SiluMul(d, u);
    }
    if (lane == 0) p.out[r] = v;
  }
}

__global__ void __launch_bounds__(kThreads) PhaseKernel(Phase p) {
  AllowDependents();
  PrefetchShareL2(p.prefetch, blockIdx.x, gridDim.x);  // weights: fixed
  WaitForPrimary();                                    // the previous phase wrote p.in
  float* xs = DynamicSharedMemory<float>();
  Stage(p, xs);
  Rows(p, xs, blockIdx.x * kWarps + threadIdx.x / 32, gridDim.x * kWarps);
}

__global__ void __launch_bounds__(kThreads) EmptyKernel() {
  AllowDependents();
  WaitForPrimary();
}

__global__ void __launch_bounds__(kThreads) PersistentKernel(const Phase* phases, int n) {
  float* xs = DynamicSharedMemory<float>();
  for (int i = 0; i < n; ++i) {
    const Phase p = phases[i];
    PrefetchShareL2(p.prefetch, blockIdx.x, gridDim.x);
    Stage(p, xs);
    Rows(p, xs, blockIdx.x * kWarps + threadIdx.x / 32, gridDim.x * kWarps);
    GridSync();  // the next phase reads this one's output; xs is free again
  }
}

__global__ void __launch_bounds__(kThreads) BarrierKernel(int n) {
  for (int i = 0; i < n; ++i) GridSync();
}

int PhaseBlocks(const Phase& p) { return (p.rows + kWarps - 1) / kWarps; }

}  // namespace

cudaError_t LaunchPerPhase(const Phase* phases, int n, int max_k, cudaStream_t stream,
                           bool programmatic) {
  const LaunchStream ls{stream, programmatic};
  for (int i = 0; i < n; ++i) {
    LaunchKernel("PhaseKernel", PhaseKernel, PhaseBlocks(phases[i]), kThreads, SharedBytes(max_k),
                 ls, phases[i]);
  }
  return cudaGetLastError();
}

cudaError_t LaunchEmptyPerPhase(const Phase* phases, int n, cudaStream_t stream,
                                bool programmatic) {
  const LaunchStream ls{stream, programmatic};
  for (int i = 0; i < n; ++i) {
    LaunchKernel("EmptyKernel", EmptyKernel, PhaseBlocks(phases[i]), kThreads, 0, ls);
  }
  return cudaGetLastError();
}

int PersistentBlocks(int max_k) {
  return CooperativeBlocks(PersistentKernel, kThreads, SharedBytes(max_k));
}

cudaError_t LaunchPersistent(const Phase* d_phases, int n, int max_k, int blocks,
                             cudaStream_t stream) {
  LaunchCooperative("PersistentKernel", PersistentKernel, blocks, kThreads, SharedBytes(max_k),
                    stream, d_phases, n);
  return cudaGetLastError();
}

cudaError_t LaunchBarriers(int n, int blocks, cudaStream_t stream) {
  LaunchCooperative("BarrierKernel", BarrierKernel, blocks, kThreads, 0, stream, n);
  return cudaGetLastError();
}

}  // namespace tpserve::kernels::cuda::fusion_bench
