// cuda::Rope: one thread per rotated pair, q heads first then k heads.
// Angles are evaluated in double precision like the CPU backend, so positions
// in the 100k range keep ~1e-6 accuracy.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_status.h"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kThreads = 256;

struct RopeArgs {
  float* q;
  float* k;
  const int32_t* positions;
  int tokens, n_heads, n_kv_heads, head_dim;
  int64_t q_stride, k_stride;
  double theta;
  bool neox;
  RopeScalingType scaling;
  double factor, low_freq_factor, high_freq_factor, original_max_position;
};

__device__ double InvFreq(const RopeArgs& a, int pair) {
  const double inv = pow(a.theta, -2.0 * pair / a.head_dim);
  if (a.scaling == RopeScalingType::kLinear) return inv / a.factor;
  if (a.scaling == RopeScalingType::kLlama3) {
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

__global__ void __launch_bounds__(kThreads) RopeKernel(RopeArgs a) {
  const int half = a.head_dim / 2;
  const int heads = a.n_heads + (a.k != nullptr ? a.n_kv_heads : 0);
  const int64_t total = static_cast<int64_t>(a.tokens) * heads * half;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (idx >= total) return;
  const int pair = static_cast<int>(idx % half);
  const int head = static_cast<int>((idx / half) % heads);
  const int t = static_cast<int>(idx / (static_cast<int64_t>(half) * heads));
  float* base = head < a.n_heads
                    ? a.q + t * a.q_stride + static_cast<int64_t>(head) * a.head_dim
                    : a.k + t * a.k_stride + static_cast<int64_t>(head - a.n_heads) * a.head_dim;
  const int i0 = a.neox ? pair : 2 * pair;
  const int i1 = a.neox ? pair + half : 2 * pair + 1;
  double s, c;
  sincos(static_cast<double>(a.positions[t]) * InvFreq(a, pair), &s, &c);
  const float x0 = base[i0];
  const float x1 = base[i1];
  base[i0] = static_cast<float>(x0 * c - x1 * s);
  base[i1] = static_cast<float>(x0 * s + x1 * c);
}

}  // namespace

absl::Status Rope(const RopeParams& p, const Stream& stream) {
  if (p.tokens < 0 || p.n_heads <= 0 || p.head_dim <= 0 || p.head_dim % 2 != 0 ||
      (p.k != nullptr && p.n_kv_heads <= 0)) {
    return absl::InvalidArgumentError("Rope: bad shape (head_dim must be even and positive)");
  }
  if (p.scaling != RopeScalingType::kNone && !(p.factor > 0.0f)) {
    return absl::InvalidArgumentError("Rope: scaling factor must be > 0");
  }
  if (p.scaling == RopeScalingType::kLlama3 &&
      !(p.low_freq_factor > 0.0f && p.low_freq_factor < p.high_freq_factor &&
        p.original_max_position > 0)) {
    return absl::InvalidArgumentError("Rope: llama3 scaling needs 0 < low < high freq factors");
  }
  if (p.tokens == 0) return absl::OkStatus();
  if (p.q == nullptr || p.positions == nullptr)
    return absl::InvalidArgumentError("Rope: null q or positions");
  RopeArgs a{};
  a.q = p.q;
  a.k = p.k;
  a.positions = p.positions;
  a.tokens = p.tokens;
  a.n_heads = p.n_heads;
  a.n_kv_heads = p.n_kv_heads;
  a.head_dim = p.head_dim;
  a.q_stride = p.q_stride == 0 ? static_cast<int64_t>(p.n_heads) * p.head_dim : p.q_stride;
  a.k_stride = p.k_stride == 0 ? static_cast<int64_t>(p.n_kv_heads) * p.head_dim : p.k_stride;
  a.theta = p.theta;
  a.neox = p.neox;
  a.scaling = p.scaling;
  a.factor = p.factor;
  a.low_freq_factor = p.low_freq_factor;
  a.high_freq_factor = p.high_freq_factor;
  a.original_max_position = p.original_max_position;
  const int heads = p.n_heads + (p.k != nullptr ? p.n_kv_heads : 0);
  const int64_t total = static_cast<int64_t>(p.tokens) * heads * (p.head_dim / 2);
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > 2147483647) return absl::InvalidArgumentError("Rope: too many elements");
  RopeKernel<<<static_cast<unsigned>(blocks), kThreads, 0,
               static_cast<cudaStream_t>(stream.cuda_stream)>>>(a);
  return LaunchStatus("RopeKernel");
}

}  // namespace tpserve::kernels::cuda
