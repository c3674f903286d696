// Warp- and block-wide reductions shared by the row-wise kernels.
//
//   float total = BlockSum(partial, scratch);  // scratch: __shared__ float[32]
#ifndef TPSERVE_KERNELS_CUDA_BLOCK_REDUCE_CUH_
#define TPSERVE_KERNELS_CUDA_BLOCK_REDUCE_CUH_

namespace tpserve::kernels::cuda {

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sums each of v's kValues values (a power of two up to 32) over the warp's
// lanes and returns, in lane l, the sum of value l >> (5 - log2(kValues)):
// a reduce-scatter, halving the values at each of the first log2(kValues)
// xor stages, then WarpSum's remaining stages. 31 shuffles for 32 values
// where 32 WarpSums take 160. Each sum adds the same lane pairs in the same
// order (xor 16, 8, 4, 2, 1) as WarpSum, so it has WarpSum's bits.
template <int kValues, int kOffset = 16>
__device__ __forceinline__ float WarpReduceScatter(float (&v)[kValues], int lane) {
  static_assert(kValues >= 1 && kValues <= 32 && (kValues & (kValues - 1)) == 0,
                "a power of two up to the warp size");
  if constexpr (kValues == 1) {
    float s = v[0];
#pragma unroll
    for (int o = kOffset; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    return s;
  } else {
    constexpr int kHalf = kValues / 2;
    const bool upper = (lane & kOffset) != 0;  // this lane keeps the upper half
    float kept[kHalf];
#pragma unroll
    for (int i = 0; i < kHalf; ++i) {
      const float send = upper ? v[i] : v[i + kHalf];
      const float keep = upper ? v[i + kHalf] : v[i];
      kept[i] = keep + __shfl_xor_sync(0xffffffffu, send, kOffset);
    }
    return WarpReduceScatter<kHalf, kOffset / 2>(kept, lane);
  }
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result. `scratch` is 32 floats of shared memory.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0f;
  return WarpSum(v);
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_BLOCK_REDUCE_CUH_
