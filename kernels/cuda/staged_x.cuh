// Activations staged in shared memory by the skinny GEMM (gemm.cu): rows of
// f32 with 4 pad floats after every 32 values, so the 8 lanes of a
// quarter-warp reading 16 bytes at a 32-value (or 16-value) stride hit
// distinct banks.
//
//   xs[Padded(c)] = x[c];                        // staging
//   acc += DotStaged<32>(w, xs + Padded(32 * j));  // one 32-value chunk
#ifndef TPSERVE_KERNELS_CUDA_STAGED_X_CUH_
#define TPSERVE_KERNELS_CUDA_STAGED_X_CUH_

namespace tpserve::kernels::cuda {

// Padded shared-memory index of staged column c.
__device__ __forceinline__ int Padded(int c) { return c + (c >> 5) * 4; }

// sum_i w[i] * x[i] over kN staged values (16-byte aligned, within one
// padded 32-value group), in column order.
template <int kN>
__device__ __forceinline__ float DotStaged(const float* w, const float* x) {
  const float4* xv = reinterpret_cast<const float4*>(x);
  float s = 0.0f;
#pragma unroll
  for (int q = 0; q < kN / 4; ++q) {
    const float4 v = xv[q];
    s = fmaf(w[4 * q], v.x, s);
    s = fmaf(w[4 * q + 1], v.y, s);
    s = fmaf(w[4 * q + 2], v.z, s);
    s = fmaf(w[4 * q + 3], v.w, s);
  }
  return s;
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_STAGED_X_CUH_
