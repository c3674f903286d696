// EncodeTensorMapBf16 (tma.h): the driver's cuTensorMapEncodeTiled, looked
// up through the runtime (no link against libcuda); under the emulator its
// own encoding (kernels/cuda/emu/tma_sm90_emu.h).
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/tma.h"

#if defined(TPSERVE_CUDA_EMU)
#include "kernels/cuda/emu/tma_sm90_emu.h"
#else
#include <cuda.h>
#include <cudaTypedefs.h>
#endif

namespace tpserve::kernels::cuda {

absl::Status EncodeTensorMapBf16(TensorMap* map, const void* base, int64_t rows, int64_t cols,
                                 int box_rows, int box_cols) {
  if (map == nullptr || base == nullptr || reinterpret_cast<uintptr_t>(base) % 16 != 0) {
    return absl::InvalidArgumentError("EncodeTensorMapBf16: null map, or base not 16-byte aligned");
  }
  if (rows < 1 || cols < 1 || cols % 8 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodeTensorMapBf16: a ", rows, " x ", cols,
                     " matrix (cols must be a positive multiple of 8)"));
  }
  if (box_cols * 2 != 128 || box_rows < 1 || box_rows > 256) {
    return absl::InvalidArgumentError(absl::StrCat("EncodeTensorMapBf16: box ", box_rows, " x ",
                                                   box_cols, " (64 columns, 1-256 rows)"));
  }
#if defined(TPSERVE_CUDA_EMU)
  ::tpserve_emu::EncodeTensorMap(map, {.base = base,
                                       .rows = rows,
                                       .cols = cols,
                                       .row_stride_bytes = cols * 2,
                                       .box_rows = box_rows,
                                       .box_cols = box_cols,
                                       .elem_bytes = 2});
  return absl::OkStatus();
#else
  static_assert(
      sizeof(TensorMap) == sizeof(CUtensorMap) && alignof(TensorMap) == alignof(CUtensorMap),
      "TensorMap is CUtensorMap's bytes");
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();  // not sticky: clear it
      fn = nullptr;
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  if (encode == nullptr) {
    return absl::FailedPreconditionError(
        "EncodeTensorMapBf16: the driver has no cuTensorMapEncodeTiled (CUDA 12.0 or later)");
  }
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(cols) * 2};  // bytes, rows past the first
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(box_cols), static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t steps[2] = {1, 1};
  const CUresult r = encode(reinterpret_cast<CUtensorMap*>(map), CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
                            2, const_cast<void*>(base), dims, strides, box, steps,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    return absl::InternalError(absl::StrCat("cuTensorMapEncodeTiled failed (CUresult ", r,
                                            ") for a ", rows, " x ", cols, " bf16 matrix"));
  }
  return absl::OkStatus();
#endif
}

}  // namespace tpserve::kernels::cuda
