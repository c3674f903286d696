// Internal to the CPU launchers: the per-ISA bodies of the non-GEMM ops.
// The elementwise bodies are written once (ops_impl.inc) in plain C++ shaped
// for auto-vectorisation (8-lane accumulators) and compiled for any CPU
// (ops_portable.cc) and with AVX2/FMA (ops_avx2.cc). Attention has a
// portable build in dot-product form (ops_impl.inc, ops_portable.cc) and an
// outer-product form written once over a vector type (attention_simd.inc),
// built for AVX2 (attention_avx2.cc) and AVX-512F/BW/VL (attention_avx512.cc,
// isa.h HasAvx512). Ranges are what one ParallelFor chunk covers.
#ifndef TPSERVE_KERNELS_CPU_OP_KERNELS_H_
#define TPSERVE_KERNELS_CPU_OP_KERNELS_H_

#include <cstdint>

#include "kernels/ops.h"

namespace tpserve::kernels::cpu {

// PagedAttention works on fixed segments of kAttentionSegment cached
// positions, [0, 128), [128, 256), ...: each segment's softmax is computed
// alone (partial results) and the segments are merged in order by
// MergeSegments. Whether segments of a row run in one work item or in
// several (decode rows, for parallelism), the arithmetic is the same, so a
// row's output depends only on its own context: never on the batch, the
// thread count or how the prompt was chunked.
constexpr int kAttentionSegment = 128;

// Work item of PagedAttention: query rows [row, row + rows) of sequence
// `seq` (row row + r has context n_ctx + r, n_ctx = row `row`'s position +
// 1), query heads [head_begin, head_end) of one KV head's group, segments
// [seg_begin, seg_end).
//
// partial == null: the item covers all segments of its rows and writes the
// normalised outputs to p.out. Otherwise (rows == 1) it writes its segments'
// partial results to `partial` (see AttendSegments) and the launcher merges.
struct AttentionItem {
  int seq;
  int64_t row;
  int head_begin;
  int head_end;
  int n_ctx;
  int seg_begin;
  int seg_end;
  float* partial;
  int rows = 1;
};

#define TPS_DECLARE_ELEMENTWISE_KERNELS                                                   \
  void RmsNormRows(const RmsNormParams& p, int64_t begin, int64_t end);                   \
  /* cos_sin: (tokens, head_dim / 2, 2) cos and sin of each token's angles. */            \
  void RopeTokens(const RopeParams& p, const float* cos_sin, int64_t begin, int64_t end); \
  void SwigluRows(const SwigluParams& p, int64_t begin, int64_t end);                     \
  void AddRange(const AddParams& p, int64_t begin, int64_t end);

#define TPS_DECLARE_ATTENTION_KERNELS                                                            \
  void Attend(const PagedAttentionParams& p, const AttentionItem& item);                         \
  /* Row `item.row` only. Per segment s, head h: partial[(s * heads + h) * (head_dim + 2) */     \
  /* ...] = unnormalised sum e^(x - max) v (head_dim floats), max, sum e^(x - max). */           \
  void AttendSegments(const PagedAttentionParams& p, const AttentionItem& item, float* partial); \
  /* out (heads, hd) = merge of `segments` partial results, in segment order. */                 \
  void MergeSegments(const float* partial, int segments, int heads, int hd, float* out);

namespace portable {
TPS_DECLARE_ELEMENTWISE_KERNELS
TPS_DECLARE_ATTENTION_KERNELS
}  // namespace portable

namespace avx2 {
TPS_DECLARE_ELEMENTWISE_KERNELS
TPS_DECLARE_ATTENTION_KERNELS
}  // namespace avx2

namespace avx512 {
TPS_DECLARE_ATTENTION_KERNELS
}  // namespace avx512

#undef TPS_DECLARE_ELEMENTWISE_KERNELS
#undef TPS_DECLARE_ATTENTION_KERNELS

}  // namespace tpserve::kernels::cpu

#endif  // TPSERVE_KERNELS_CPU_OP_KERNELS_H_
