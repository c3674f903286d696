// The one place where runtime values become template arguments (STYLE.md rule
// 4). Each macro runs its body with a constexpr bound to the case taken and
// returns InvalidArgument from the enclosing function for unsupported values,
// so call sites stay flat:
//
//   TPS_WEIGHT_DTYPE_SWITCH(p.w_dtype, kW, {
//     TPS_ROWS_PER_PASS_SWITCH(p.m, kRows, { return LaunchGemv<kW, kRows>(p, s); });
//   });
#ifndef TPSERVE_KERNELS_CUDA_DISPATCH_CUH_
#define TPSERVE_KERNELS_CUDA_DISPATCH_CUH_

#include <cstdint>

#include "absl/status/status.h"
#include "formats/dtype.h"

// Every weight type of dtype.h.
#define TPS_WEIGHT_DTYPE_SWITCH(dtype, NAME, ...)                \
  switch (dtype) {                                               \
    case ::tpserve::DType::kF32: {                               \
      constexpr ::tpserve::DType NAME = ::tpserve::DType::kF32;  \
      __VA_ARGS__                                                \
    }                                                            \
    case ::tpserve::DType::kF16: {                               \
      constexpr ::tpserve::DType NAME = ::tpserve::DType::kF16;  \
      __VA_ARGS__                                                \
    }                                                            \
    case ::tpserve::DType::kBF16: {                              \
      constexpr ::tpserve::DType NAME = ::tpserve::DType::kBF16; \
      __VA_ARGS__                                                \
    }                                                            \
    case ::tpserve::DType::kQ8_0: {                              \
      constexpr ::tpserve::DType NAME = ::tpserve::DType::kQ8_0; \
      __VA_ARGS__                                                \
    }                                                            \
    case ::tpserve::DType::kQ4_0: {                              \
      constexpr ::tpserve::DType NAME = ::tpserve::DType::kQ4_0; \
      __VA_ARGS__                                                \
    }                                                            \
    case ::tpserve::DType::kQ4_1: {                              \
      constexpr ::tpserve::DType NAME = ::tpserve::DType::kQ4_1; \
      __VA_ARGS__                                                \
    }                                                            \
  }                                                              \
  return ::absl::InvalidArgumentError("unsupported weight dtype");

// Activation rows handled per pass of the skinny GEMM: 1 (single-token
// decode, no wasted registers) or 16 (batched decode: up to 16 rows read each
// weight row once; more re-read it from L2 once per 16 rows).
#define TPS_ROWS_PER_PASS_SWITCH(m, NAME, ...) \
  if ((m) == 1) {                              \
    constexpr int NAME = 1;                    \
    __VA_ARGS__                                \
  } else {                                     \
    constexpr int NAME = 16;                   \
    __VA_ARGS__                                \
  }

// Head dims per lane (head_dim rounded up to a multiple of 32, over 32):
// 2 covers head_dim <= 64, 4 <= 128, 8 <= 256. Odd head dims use the next size.
#define TPS_HEAD_DIM_SWITCH(head_dim, NAME, ...) \
  if ((head_dim) <= 64) {                        \
    constexpr int NAME = 2;                      \
    __VA_ARGS__                                  \
  } else if ((head_dim) <= 128) {                \
    constexpr int NAME = 4;                      \
    __VA_ARGS__                                  \
  } else if ((head_dim) <= 256) {                \
    constexpr int NAME = 8;                      \
    __VA_ARGS__                                  \
  }                                              \
  return ::absl::InvalidArgumentError("head_dim above 256 is not supported by CUDA attention");

// KV cache elements (kernels/cuda/paged_kv.cuh): NAME = float for kF32,
// uint16_t (bf16 bits) for kBF16.
#define TPS_KV_DTYPE_SWITCH(dtype, NAME, ...) \
  switch (dtype) {                            \
    case ::tpserve::DType::kF32: {            \
      using NAME = float;                     \
      __VA_ARGS__                             \
    }                                         \
    case ::tpserve::DType::kBF16: {           \
      using NAME = uint16_t;                  \
      __VA_ARGS__                             \
    }                                         \
    default:                                  \
      break;                                  \
  }                                           \
  return ::absl::InvalidArgumentError("the KV cache dtype must be F32 or BF16");

#endif  // TPSERVE_KERNELS_CUDA_DISPATCH_CUH_
