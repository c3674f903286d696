// CPU backend launchers for the ops in kernels/ops.h. Each validates its
// parameters (InvalidArgument on inconsistent shapes or out-of-range ids),
// picks the AVX2/FMA/F16C variant when the CPU has it (portable C++
// otherwise; see isa.h) and splits the work over stream.pool.
//
//   ThreadPool pool(2);
//   Stream stream{.pool = &pool};
//   RmsNormParams p{.x = h, .weight = w, .y = h, .rows = 1, .dim = 576, .eps = 1e-5f};
//   TPS_RETURN_IF_ERROR(cpu::RmsNorm(p, stream));
//
// This backend is the reference the CUDA kernels are tested against.
#ifndef TPSERVE_KERNELS_CPU_CPU_OPS_H_
#define TPSERVE_KERNELS_CPU_CPU_OPS_H_

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/ops.h"

namespace tpserve::kernels::cpu {

[[nodiscard]] absl::Status Gemm(const GemmParams& p, const Stream& stream);
// Several linear layers over the same activations (x, m, k and x_stride
// equal), e.g. Q, K and V, or gate and up: the activations are quantized once
// and one thread-pool launch covers all parts (a decode step issues ~250
// launches; each costs ~1 us of synchronisation with 2 threads).
[[nodiscard]] absl::Status GemmMulti(absl::Span<const GemmParams> parts, const Stream& stream);
[[nodiscard]] absl::Status RmsNorm(const RmsNormParams& p, const Stream& stream);
[[nodiscard]] absl::Status Rope(const RopeParams& p, const Stream& stream);
[[nodiscard]] absl::Status Swiglu(const SwigluParams& p, const Stream& stream);
[[nodiscard]] absl::Status Add(const AddParams& p, const Stream& stream);
[[nodiscard]] absl::Status AddFixedPoint(const AddFixedPointParams& p, const Stream& stream);
[[nodiscard]] absl::Status Embedding(const EmbeddingParams& p, const Stream& stream);
[[nodiscard]] absl::Status KvCacheWrite(const KvCacheWriteParams& p, const Stream& stream);
[[nodiscard]] absl::Status PagedAttention(const PagedAttentionParams& p, const Stream& stream);

}  // namespace tpserve::kernels::cpu

#endif  // TPSERVE_KERNELS_CPU_CPU_OPS_H_
