#include "worker/engine/cuda/device_weights.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/weight_layout.h"

namespace tpserve {

absl::StatusOr<DeviceLinear> UploadLinear(const Linear& l) {
  DeviceLinear d;
  d.out_features = l.out_features;
  d.in_features = l.in_features;
  for (const LinearPart& p : l.parts) {
    DeviceLinear::Part part;
    part.dtype = p.weight.dtype;
    part.rows = static_cast<int>(p.weight.rows());
    // Repacked into the GEMMs' device layout (quant and scale planes) in a
    // host copy that lives for this part's upload only.
    const int64_t cols = p.weight.cols();
    const int64_t bytes = kernels::cuda::DeviceWeightBytes(part.dtype, part.rows, cols);
    if (bytes < 0 ||
        static_cast<uint64_t>(part.rows * RowBytes(part.dtype, cols)) != p.weight.bytes) {
      return absl::InvalidArgumentError("UploadLinear: weight bytes do not match its shape");
    }
    std::vector<uint8_t> packed(static_cast<size_t>(bytes));
    kernels::cuda::PackDeviceWeight(part.dtype, part.rows, cols, p.weight.data, packed.data());
    TPS_ASSIGN_OR_RETURN(part.weight, Upload(packed.data(), packed.size()));
    TPS_ASSIGN_OR_RETURN(part.bias, Upload(p.bias.data(), p.bias.size()));
    part.out_offset = p.out_offset;
    d.parts.push_back(std::move(part));
  }
  return d;
}

bool UsesBf16Copies(const Bf16Scratch& bf16, int m) {
  return bf16.data != nullptr && m > kernels::cuda::kSkinnyGemmMaxRows;
}

absl::Status RunLinear(const DeviceLinear& l, const float* x, int m, float* y, int64_t y_stride,
                       const kernels::Stream& s, Bf16Scratch bf16,
                       const kernels::cuda::L2Prefetch& prefetch, int64_t* y_fixed, int chunk) {
  const bool copies = y_fixed == nullptr && UsesBf16Copies(bf16, m);
  if (bf16.x_ready && !copies) {
    return absl::FailedPreconditionError(
        "RunLinear: x is in the bf16 scratch but this product reads f32 x");
  }
  bool x_in_scratch = bf16.x_ready;  // the parts share x: its bf16 copy is made once
  for (const DeviceLinear::Part& p : l.parts) {
    kernels::GemmParams g;
    g.x = x;
    g.w = p.weight.data();
    g.w_dtype = p.dtype;
    g.bias = p.bias.size() > 0 ? p.bias.data() : nullptr;
    if (y_fixed != nullptr) {
      g.y_fixed = y_fixed + p.out_offset;
      g.fixed_chunk = chunk;
    } else {
      g.y = y + p.out_offset;
    }
    g.m = m;
    g.n = p.rows;
    g.k = l.in_features;
    g.y_stride = y_stride;
    if (copies) {
      TPS_RETURN_IF_ERROR(kernels::cuda::GemmViaBf16(g, bf16.data, s, bf16.gemm, x_in_scratch));
      x_in_scratch = true;
    } else {
      TPS_RETURN_IF_ERROR(kernels::cuda::Gemm(
          g, s, &p == &l.parts.front() ? prefetch : kernels::cuda::L2Prefetch{}));
    }
  }
  return absl::OkStatus();
}

int64_t ViaBf16ScratchElems(const DeviceLinear& l, int m) {
  int64_t elems = 0;
  for (const DeviceLinear::Part& p : l.parts) {
    elems = std::max(elems, kernels::cuda::GemmViaBf16ScratchElems(m, p.rows, l.in_features));
  }
  return elems;
}

absl::Status RunLinearFused(const DeviceLinear& l, const float* x, float* y, const float* norm,
                            float eps, bool add_to_y, const kernels::Stream& s,
                            const kernels::cuda::L2Prefetch& prefetch) {
  for (const DeviceLinear::Part& p : l.parts) {
    const kernels::GemmParams g{.x = x,
                                .w = p.weight.data(),
                                .w_dtype = p.dtype,
                                .bias = p.bias.size() > 0 ? p.bias.data() : nullptr,
                                .y = y + p.out_offset,
                                .m = 1,
                                .n = p.rows,
                                .k = l.in_features};
    const bool first = &p == &l.parts.front();
    TPS_RETURN_IF_ERROR(
        kernels::cuda::GemmFused(g,
                                 {.norm = norm,
                                  .eps = eps,
                                  .add_to_y = add_to_y,
                                  .prefetch = first ? prefetch : kernels::cuda::L2Prefetch{}},
                                 /*swiglu=*/false, s));
  }
  return absl::OkStatus();
}

kernels::cuda::L2Prefetch WeightsToPrefetch(const DeviceLinear& l) {
  kernels::cuda::L2Prefetch r;
  for (const DeviceLinear::Part& p : l.parts) {
    if (!r.Add(p.weight.data(), static_cast<int64_t>(p.weight.size()))) break;
  }
  return r;
}

absl::StatusOr<DeviceLayer> UploadLayer(const LayerWeights& w, size_t cache_bytes) {
  DeviceLayer l;
  TPS_ASSIGN_OR_RETURN(l.attn_norm, Upload(w.attn_norm.data(), w.attn_norm.size()));
  TPS_ASSIGN_OR_RETURN(l.qkv, UploadLinear(w.qkv));
  TPS_ASSIGN_OR_RETURN(l.o, UploadLinear(w.o));
  TPS_ASSIGN_OR_RETURN(l.ffn_norm, Upload(w.ffn_norm.data(), w.ffn_norm.size()));
  TPS_ASSIGN_OR_RETURN(l.gate_up, UploadLinear(w.gate_up));
  TPS_ASSIGN_OR_RETURN(l.down, UploadLinear(w.down));
  TPS_ASSIGN_OR_RETURN(l.k_cache, DeviceBuffer<uint8_t>::Allocate(cache_bytes));
  TPS_ASSIGN_OR_RETURN(l.v_cache, DeviceBuffer<uint8_t>::Allocate(cache_bytes));
  TPS_RETURN_IF_ERROR(l.k_cache.Zero());
  TPS_RETURN_IF_ERROR(l.v_cache.Zero());
  return l;
}

}  // namespace tpserve
