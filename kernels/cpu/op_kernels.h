// Internal to the CPU launchers: the per-ISA bodies of the non-GEMM ops. Each
// body is written once (elementwise_impl.inc, attention_impl.inc) in plain
// C++ shaped for auto-vectorisation (8-lane accumulators) and compiled twice:
// ops_portable.cc for any CPU, ops_avx2.cc with AVX2/FMA enabled. Ranges are
// what one ParallelFor chunk covers.
#ifndef TPSERVE_KERNELS_CPU_OP_KERNELS_H_
#define TPSERVE_KERNELS_CPU_OP_KERNELS_H_

#include <cstdint>

#include "kernels/ops.h"

namespace tpserve::kernels::cpu {

// Work item of PagedAttention: query row `row` of sequence `seq`, query heads
// [head_begin, head_end) (all within one KV head's group), cached positions
// [pos_begin, pos_end) (a part of the row's causal context [0, pos]).
//
// partial == null: the item covers the whole context and writes the
// normalised output to p.out. Otherwise (context split across items) it
// writes, per head h, `partial + h * (head_dim + 2)`: the unnormalised
// sum_j e^(s_j - max) v_j (head_dim floats), then max and sum_j e^(s_j - max);
// the launcher merges the parts.
struct AttentionItem {
  int seq;
  int64_t row;
  int head_begin;
  int head_end;
  int pos_begin;
  int pos_end;
  float* partial;
};

#define TPS_DECLARE_OP_KERNELS                                                            \
  void RmsNormRows(const RmsNormParams& p, int64_t begin, int64_t end);                   \
  /* cos_sin: (tokens, head_dim / 2, 2) cos and sin of each token's angles. */            \
  void RopeTokens(const RopeParams& p, const float* cos_sin, int64_t begin, int64_t end); \
  void SwigluRows(const SwigluParams& p, int64_t begin, int64_t end);                     \
  void AddRange(const AddParams& p, int64_t begin, int64_t end);                          \
  void Attend(const PagedAttentionParams& p, const AttentionItem& item);

namespace portable {
TPS_DECLARE_OP_KERNELS
}  // namespace portable

namespace avx2 {
TPS_DECLARE_OP_KERNELS
}  // namespace avx2

#undef TPS_DECLARE_OP_KERNELS

}  // namespace tpserve::kernels::cpu

#endif  // TPSERVE_KERNELS_CPU_OP_KERNELS_H_
