// Device-side weights and buffers of the CUDA backend: a linear layer's
// uploaded parts (quantized matrices stay quantized, repacked into the
// GEMMs' quant and scale planes, kernels/cuda/weight_layout.h; the GEMMs
// dequantize on the fly), one transformer layer's device weights and KV cache, and the
// helpers that upload and grow device buffers (pinned_staging.h stages
// per-step host arrays).
//
//   TPS_ASSIGN_OR_RETURN(DeviceLinear qkv, UploadLinear(layer_weights.qkv));
//   TPS_RETURN_IF_ERROR(Grow(d_scratch, n, &moves));
//   TPS_RETURN_IF_ERROR(RunLinear(qkv, x, rows, y, qkv.out_features, stream_ref));
#ifndef TPSERVE_WORKER_ENGINE_CUDA_DEVICE_WEIGHTS_H_
#define TPSERVE_WORKER_ENGINE_CUDA_DEVICE_WEIGHTS_H_

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/status.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/ops.h"
#include "worker/engine/shard_weights.h"

namespace tpserve {

using kernels::cuda::DeviceBuffer;

// `n` elements of host memory at `src` as a new device buffer. The copy
// lands on the legacy stream after the call returns (pageable source): the
// caller synchronises the device before another stream reads the buffer
// (CudaForward::Load does, once, after every upload).
template <typename T>
absl::StatusOr<DeviceBuffer<T>> Upload(const T* src, size_t n) {
  TPS_ASSIGN_OR_RETURN(DeviceBuffer<T> b, DeviceBuffer<T>::Allocate(n));
  if (n > 0) {
    TPS_CUDA_RETURN_IF_ERROR(cudaMemcpy(b.data(), src, n * sizeof(T), cudaMemcpyHostToDevice));
  }
  return b;
}

// Grows `b` to at least `n` elements (contents are not kept); counts each
// reallocation in *moves (captured graphs point at the old memory).
template <typename T>
absl::Status Grow(DeviceBuffer<T>& b, size_t n, uint64_t* moves) {
  if (b.size() >= n) return absl::OkStatus();
  b = DeviceBuffer<T>();  // free first: scratch can be large
  TPS_ASSIGN_OR_RETURN(b, DeviceBuffer<T>::Allocate(n));
  ++*moves;
  return absl::OkStatus();
}

// A Linear (shard_weights.h) in device memory: parts side by side in the
// output, each its own dtype.
struct DeviceLinear {
  struct Part {
    DeviceBuffer<uint8_t> weight;  // (rows, in_features) in weight_layout.h's layout
    DType dtype = DType::kF32;
    int rows = 0;
    DeviceBuffer<float> bias;  // (rows) or empty
    int out_offset = 0;        // first output column of this part
  };
  std::vector<Part> parts;
  int out_features = 0;
  int in_features = 0;
};

[[nodiscard]] absl::StatusOr<DeviceLinear> UploadLinear(const Linear& l);

// Prefill GEMMs' bf16 copies (RunLinear): ViaBf16ScratchElems(l, m)
// elements, and the kernel that multiplies them. `x_ready`: data already
// holds x's copy, written by the kernel that computed x
// (kernels/cuda/cuda_ops.h Bf16Copy), so x itself is not read.
struct Bf16Scratch {
  uint16_t* data = nullptr;
  kernels::cuda::Bf16Gemm gemm = kernels::cuda::Bf16Gemm::kMma;
  bool x_ready = false;
};

// Whether RunLinear multiplies m rows of f32 output through bf16 copies.
[[nodiscard]] bool UsesBf16Copies(const Bf16Scratch& bf16, int m);

// y (m, *) with row stride y_stride = x (m, in_features) W^T (+ b), part by part;
// into y_fixed instead when set (kernels/ops.h GemmParams::y_fixed, `chunk`
// columns per partial for plain weights). Above kSkinnyGemmMaxRows rows, with
// `bf16.data`, through bf16 copies (kernels/cuda/cuda_ops.h GemmViaBf16: the
// converting kernel's bits on 24 emulator cases; the GEMM kernel measured
// 2.0-2.9x faster on an H100). FAILED_PRECONDITION if bf16.x_ready and the
// product does not go through the copies (x would be read stale).
// The first part's launch also prefetches `prefetch` into L2 where Gemm's
// kernel takes it (kernels/cuda/cuda_ops.h: the decode kernel, 2 <= m <= 64).
[[nodiscard]] absl::Status RunLinear(const DeviceLinear& l, const float* x, int m, float* y,
                                     int64_t y_stride, const kernels::Stream& s,
                                     Bf16Scratch bf16 = {},
                                     const kernels::cuda::L2Prefetch& prefetch = {},
                                     int64_t* y_fixed = nullptr, int chunk = 32);
// Scratch elements RunLinear's bf16 copies of `l` need at m rows (its widest part).
[[nodiscard]] int64_t ViaBf16ScratchElems(const DeviceLinear& l, int m);

// RunLinear at m = 1 with a kernels/cuda/cuda_ops.h GemmFusion on every part:
// x normalised on the way in (`norm`), or y added to (`add_to_y`). The first
// part's launch also prefetches `prefetch` into L2 (GemmFusion::prefetch).
[[nodiscard]] absl::Status RunLinearFused(const DeviceLinear& l, const float* x, float* y,
                                          const float* norm, float eps, bool add_to_y,
                                          const kernels::Stream& s,
                                          const kernels::cuda::L2Prefetch& prefetch = {});
// The weights of l's parts as L2 prefetch ranges (the first
// L2Prefetch::kMaxRanges parts; biases are left out).
[[nodiscard]] kernels::cuda::L2Prefetch WeightsToPrefetch(const DeviceLinear& l);

// One transformer layer of this rank on the device.
struct DeviceLayer {
  DeviceBuffer<float> attn_norm;  // (H)
  DeviceLinear qkv, o;
  DeviceBuffer<float> ffn_norm;  // (H)
  DeviceLinear gate_up, down;
  // (num_blocks, block_size, n_kv_heads, head_dim) in the KV dtype (f32 or bf16)
  DeviceBuffer<uint8_t> k_cache, v_cache;
};

// Uploads `w` and allocates a zeroed KV cache of `cache_bytes` per side.
[[nodiscard]] absl::StatusOr<DeviceLayer> UploadLayer(const LayerWeights& w, size_t cache_bytes);

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_CUDA_DEVICE_WEIGHTS_H_
