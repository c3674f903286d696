// The prefill half of cuda::Gemm: the tensor-core kernel with converting
// loaders (f32 activations, any dtype.h weight dequantised in registers), so
// quantized weights reach the tensor cores without a bf16 copy in memory.
// And cuda::GemmViaBf16's: the same loaders' conversions written out to bf16
// rows first, then the cp.async kernel (GemmBf16) on those copies.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dispatch.cuh"
#include "kernels/cuda/gemm_internal.h"
#include "kernels/cuda/tensor_core_gemm.cuh"

namespace tpserve::kernels::cuda {
namespace {

template <DType kW>
absl::Status Launch(const TcArgs& args, cudaStream_t stream) {
  auto kernel = TensorCoreGemmKernel<ConvertLoader<DType::kF32>, ConvertLoader<kW>>;
  TPS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(kTcSharedBytes)));
  kernel<<<TensorCoreGrid(args.m, args.n), kTcThreads, kTcSharedBytes, stream>>>(args);
  return LaunchStatus("TensorCoreGemmKernel<f32, weights>");
}

// Rows of `op` (k columns) as bf16 rows of `ld` = k rounded up to kBK
// elements, the tail zero: one loader tile (kBM rows, kBK columns) per
// block, converted by ConvertLoader exactly as the tensor-core kernel
// converts it, through shared memory (each thread reads back the half row it
// stored, so no barrier is needed).
template <DType kType>
__global__ void __launch_bounds__(kTcThreads)
    ConvertRowsKernel(TcOperand op, int k, int64_t ld, uint16_t* out) {
  uint16_t* tile = DynamicSharedMemory<uint16_t>();  // [kBM][kLds]
  const int row0 = blockIdx.x * kBM;
  const int k0 = blockIdx.y * kBK;
  ConvertLoader<kType> loader;
  loader.Fetch(tile, op, k, row0, k0);
  loader.Store(tile);
  const int r = threadIdx.x >> 1;
  const int half = threadIdx.x & 1;
  if (row0 + r >= op.rows) return;
  const uint4* src = reinterpret_cast<const uint4*>(tile + r * kLds + half * 16);
  uint4* dst = reinterpret_cast<uint4*>(out + (row0 + r) * ld + k0 + half * 16);
  dst[0] = src[0];
  dst[1] = src[1];
}

template <DType kType>
absl::Status ConvertRows(const TcOperand& op, int k, int64_t ld, uint16_t* out,
                         cudaStream_t stream) {
  const dim3 grid((op.rows + kBM - 1) / kBM, static_cast<unsigned>(ld / kBK));
  ConvertRowsKernel<kType>
      <<<grid, kTcThreads, sizeof(uint16_t) * kBM * kLds, stream>>>(op, k, ld, out);
  return LaunchStatus("ConvertRowsKernel");
}

// GemmBf16's kernel on x's copy (xa, rows of ld) with B = w^T dequantised
// by its loader from the device layout: ConvertRows's arithmetic on the same
// tiles, so kMma's bits on w's copy, without the copy. Quantized w (k % 32
// == 0, so ld == k).
template <DType kW>
absl::Status LaunchDequantizing(const uint16_t* xa, int64_t ld, const GemmParams& p,
                                int64_t y_stride, cudaStream_t stream) {
  static_assert(IsQuantized(kW));
  const TcArgs args{{xa, p.m, ld}, {p.w, p.n, p.k}, p.bias, p.y, p.m, p.n, p.k, y_stride};
  TPS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      TensorCoreGemmKernel<CpAsyncBf16Loader, ConvertLoader<kW>>,
      cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kTcSharedBytes)));
  TensorCoreGemmKernel<CpAsyncBf16Loader, ConvertLoader<kW>>
      <<<TensorCoreGrid(p.m, p.n), kTcThreads, kTcSharedBytes, stream>>>(args);
  return LaunchStatus("TensorCoreGemmKernel<bf16, quantized weights>");
}

absl::Status ConvertWeights(const GemmParams& p, int64_t ld, uint16_t* out, cudaStream_t stream) {
  TPS_WEIGHT_DTYPE_SWITCH(p.w_dtype, kW, {
    return ConvertRows<kW>({p.w, p.n, p.k}, p.k, ld, out, stream);
  });
}

}  // namespace

int64_t GemmViaBf16RowElems(int k) { return (static_cast<int64_t>(k) + kBK - 1) / kBK * kBK; }

absl::Status LaunchViaBf16Gemm(const GemmParams& p, int64_t x_stride, int64_t y_stride,
                               uint16_t* scratch, cudaStream_t stream, Bf16Gemm gemm,
                               bool x_in_scratch) {
  const int64_t ld = GemmViaBf16RowElems(p.k);
  uint16_t* xa = scratch;
  uint16_t* wb = scratch + p.m * ld;
  if (!x_in_scratch) {
    if (absl::Status st = ConvertRows<DType::kF32>({p.x, p.m, x_stride}, p.k, ld, xa, stream);
        !st.ok()) {
      return st;
    }
  }
  // kMmaDequant: the mma.sync kernel dequantises quantized weights itself.
  if (gemm == Bf16Gemm::kMmaDequant && IsQuantized(p.w_dtype)) {
    switch (p.w_dtype) {
      case DType::kQ8_0:
        return LaunchDequantizing<DType::kQ8_0>(xa, ld, p, y_stride, stream);
      case DType::kQ4_0:
        return LaunchDequantizing<DType::kQ4_0>(xa, ld, p, y_stride, stream);
      case DType::kQ4_1:
        return LaunchDequantizing<DType::kQ4_1>(xa, ld, p, y_stride, stream);
      default:
        return absl::InvalidArgumentError("GemmViaBf16: unknown quantized weight type");
    }
  }
  // The wgmma kernels dequantise quantized weights themselves: no copy of w. BF16
  // rows that fill whole k tiles are their own copy (ConvertRows would
  // write back the values it read): no copy either.
  const bool wgmma = gemm == Bf16Gemm::kWgmma || gemm == Bf16Gemm::kWgmmaTma;
  const bool dequantize = wgmma && WgmmaDequantizes(p.w_dtype);
  const bool w_is_copy =
      p.w_dtype == DType::kBF16 && ld == p.k && reinterpret_cast<uintptr_t>(p.w) % 16 == 0;
  if (!w_is_copy && !dequantize) {
    if (absl::Status st = ConvertWeights(p, ld, wb, stream); !st.ok()) return st;
  }
  const GemmBf16Params copies{.a = xa,
                              .b = dequantize  ? nullptr
                                   : w_is_copy ? static_cast<const uint16_t*>(p.w)
                                               : wb,
                              .bias = p.bias,
                              .c = p.y,
                              .m = p.m,
                              .n = p.n,
                              .k = static_cast<int>(ld),
                              .c_stride = y_stride};
  if (dequantize) {
    return GemmWgmmaQuantWeights(copies, p.w, p.w_dtype, gemm == Bf16Gemm::kWgmmaTma,
                                 {.cuda_stream = stream});
  }
  switch (gemm) {
    case Bf16Gemm::kWgmma:
      return GemmBf16Wgmma(copies, {.cuda_stream = stream});
    case Bf16Gemm::kWgmmaTma:
      return GemmBf16WgmmaTma(copies, {.cuda_stream = stream});
    case Bf16Gemm::kMma:
    case Bf16Gemm::kMmaDequant:
      break;
  }
  return GemmBf16(copies, {.cuda_stream = stream});
}

absl::Status LaunchTensorCoreGemm(const GemmParams& p, int64_t x_stride, int64_t y_stride,
                                  cudaStream_t stream) {
  if ((p.m + kBM - 1) / kBM > 65535)
    return absl::InvalidArgumentError("Gemm: m too large for one launch");
  const TcArgs args{{p.x, p.m, x_stride}, {p.w, p.n, p.k}, p.bias, p.y, p.m, p.n, p.k, y_stride};
  TPS_WEIGHT_DTYPE_SWITCH(p.w_dtype, kW, { return Launch<kW>(args, stream); });
}

}  // namespace tpserve::kernels::cuda
