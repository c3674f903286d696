// Rotary position embedding on the device, shared by rope.cu (cuda::Rope,
// cuda::RopeKvWrite) and the decode attention that fuses it
// (paged_attention_decode.cu), so every path rotates with the same bits:
// angles in double precision like the CPU backend (positions in the 100k
// range keep ~1e-6 accuracy), products in double, rounded once to f32.
//
//   const RopeArgs a = MakeRopeArgs(params);   // after CheckRope(params)
//   double s, c;
//   sincos(static_cast<double>(a.positions[t]) * InvFreq(a, pair), &s, &c);
//   RotatePair(a, head_row, pair, s, c);
#ifndef TPSERVE_KERNELS_CUDA_ROPE_CUH_
#define TPSERVE_KERNELS_CUDA_ROPE_CUH_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/ops.h"

namespace tpserve::kernels::cuda {

struct RopeArgs {
  float* q;
  float* k;
  const int32_t* positions;
  int tokens, n_heads, n_kv_heads, head_dim;
  int64_t q_stride, k_stride;
  double theta;
  bool neox;
  RopeScaling::Type scaling;
  double factor, low_freq_factor, high_freq_factor, original_max_position;
};

__device__ __forceinline__ double InvFreq(const RopeArgs& a, int pair) {
  const double inv = pow(a.theta, -2.0 * pair / a.head_dim);
  if (a.scaling == RopeScaling::Type::kLinear) return inv / a.factor;
  if (a.scaling == RopeScaling::Type::kLlama3) {
    const double kPi = 3.14159265358979323846;
    const double wavelen = 2.0 * kPi / inv;
    const double low_wavelen = a.original_max_position / a.low_freq_factor;
    const double high_wavelen = a.original_max_position / a.high_freq_factor;
    if (wavelen > low_wavelen) return inv / a.factor;
    if (wavelen < high_wavelen) return inv;
    const double s = (a.original_max_position / wavelen - a.low_freq_factor) /
                     (a.high_freq_factor - a.low_freq_factor);
    return (1.0 - s) * inv / a.factor + s * inv;
  }
  return inv;
}

// Rotates pair `pair` of one head's row (neox: elements pair and pair +
// head_dim / 2; else 2 pair and 2 pair + 1) by the angle with sine s and
// cosine c.
__device__ __forceinline__ void RotatePair(const RopeArgs& a, float* row, int pair, double s,
                                           double c) {
  const int half = a.head_dim / 2;
  const int i0 = a.neox ? pair : 2 * pair;
  const int i1 = a.neox ? pair + half : 2 * pair + 1;
  const float x0 = row[i0];
  const float x1 = row[i1];
  row[i0] = static_cast<float>(x0 * c - x1 * s);
  row[i1] = static_cast<float>(x0 * s + x1 * c);
}

inline absl::Status CheckRope(const RopeParams& p) {
  if (p.tokens < 0 || p.n_heads <= 0 || p.head_dim <= 0 || p.head_dim % 2 != 0 ||
      (p.k != nullptr && p.n_kv_heads <= 0)) {
    return absl::InvalidArgumentError("Rope: bad shape (head_dim must be even and positive)");
  }
  if (p.scaling.type != RopeScaling::Type::kNone && !(p.scaling.factor > 0.0f)) {
    return absl::InvalidArgumentError("Rope: scaling factor must be > 0");
  }
  if (p.scaling.type == RopeScaling::Type::kLlama3 &&
      !(p.scaling.low_freq_factor > 0.0f &&
        p.scaling.low_freq_factor < p.scaling.high_freq_factor &&
        p.scaling.original_max_position > 0)) {
    return absl::InvalidArgumentError("Rope: llama3 scaling needs 0 < low < high freq factors");
  }
  if (p.tokens > 0 && (p.q == nullptr || p.positions == nullptr)) {
    return absl::InvalidArgumentError("Rope: null q or positions");
  }
  return absl::OkStatus();
}

// Floats between the rows of `heads` heads of head_dim: `stride`, or the
// rows' width when it is 0 (the params' convention).
inline int64_t RowStride(int64_t stride, int heads, int head_dim) {
  return stride == 0 ? int64_t{heads} * head_dim : stride;
}

// RopeKvWrite's arguments, wherever it runs (its own launch, or inside
// decode attention): the rotated k must be the k written.
inline absl::Status CheckRopeKvWrite(const RopeParams& rope, const KvCacheWriteParams& kv) {
  if (absl::Status st = CheckRope(rope); !st.ok()) return st;
  if (rope.k == nullptr || rope.k != kv.k || rope.tokens != kv.tokens ||
      rope.n_kv_heads != kv.n_kv_heads || rope.head_dim != kv.head_dim ||
      RowStride(rope.k_stride, rope.n_kv_heads, rope.head_dim) !=
          RowStride(kv.k_stride, kv.n_kv_heads, kv.head_dim)) {
    return absl::InvalidArgumentError(
        "RopeKvWrite: the rotated k must be the k written (same buffer, tokens, heads, stride)");
  }
  if (kv.block_size <= 0 || kv.num_blocks < 0) {
    return absl::InvalidArgumentError("RopeKvWrite: bad cache shape");
  }
  if (rope.tokens > 0 && (kv.v == nullptr || kv.k_cache == nullptr || kv.v_cache == nullptr ||
                          kv.slot_mapping == nullptr)) {
    return absl::InvalidArgumentError("RopeKvWrite: null pointer");
  }
  return absl::OkStatus();
}

inline RopeArgs MakeRopeArgs(const RopeParams& p) {
  RopeArgs a{};
  a.q = p.q;
  a.k = p.k;
  a.positions = p.positions;
  a.tokens = p.tokens;
  a.n_heads = p.n_heads;
  a.n_kv_heads = p.n_kv_heads;
  a.head_dim = p.head_dim;
  a.q_stride = RowStride(p.q_stride, p.n_heads, p.head_dim);
  a.k_stride = RowStride(p.k_stride, p.n_kv_heads, p.head_dim);
  a.theta = p.theta;
  a.neox = p.neox;
  a.scaling = p.scaling.type;
  a.factor = p.scaling.factor;
  a.low_freq_factor = p.scaling.low_freq_factor;
  a.high_freq_factor = p.scaling.high_freq_factor;
  a.original_max_position = p.scaling.original_max_position;
  return a;
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_ROPE_CUH_
