// cuda::Sample: one 1024-thread block per logits row; see sampling.h for the
// algorithm and why every cut is a key threshold.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/sampling.h"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

// Float bits mapped so unsigned order is numeric order (-0 treated as +0).
__device__ __forceinline__ uint32_t OrderedBits(float f) {
  if (f == 0.0f) f = 0.0f;
  const uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) != 0 ? ~b : (b | 0x80000000u);
}

// Sampler order as one integer: larger logit first, then lower token id.
__device__ __forceinline__ uint64_t Key(float x, int t) {
  return (static_cast<uint64_t>(OrderedBits(x)) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(t));
}

__device__ __forceinline__ int TokenOf(uint64_t key) {
  return static_cast<int>(0xFFFFFFFFu - static_cast<uint32_t>(key & 0xFFFFFFFFu));
}

__device__ double BlockSumDouble(double v, double* scratch) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  v = (threadIdx.x & 31) < kWarps ? scratch[threadIdx.x & 31] : 0.0;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// kMax: block max of v; else block min.
template <bool kMax>
__device__ uint64_t BlockExtremeKey(uint64_t v, uint64_t* scratch) {
  for (int o = 16; o > 0; o >>= 1) {
    const uint64_t other = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? max(v, other) : min(v, other);
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  v = scratch[threadIdx.x & 31];  // kWarps == 32
  for (int o = 16; o > 0; o >>= 1) {
    const uint64_t other = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? max(v, other) : min(v, other);
  }
  return v;
}
static_assert(kWarps == 32, "BlockExtremeKey reads one scratch slot per lane");

// Largest key tau with F(tau) >= target (kStrict: > target), where
// F(tau) = sum of weight(t) over tokens with key >= max(tau, lo). F is a
// non-increasing step function that drops right after each token's key, so
// tau is a token's key whenever F(lo) passes the test; 0 otherwise.
template <bool kStrict, typename Weight>
__device__ uint64_t SearchKey(const float* x, int vocab, uint64_t lo, double target, Weight weight,
                              double* scratch) {
  uint64_t tau = 0;
  for (int bit = 63; bit >= 0; --bit) {
    const uint64_t cand = tau | (uint64_t{1} << bit);
    const uint64_t thr = max(cand, lo);
    double s = 0.0;
    for (int t = threadIdx.x; t < vocab; t += kThreads) {
      if (Key(x[t], t) >= thr) s += weight(t);
    }
    s = BlockSumDouble(s, scratch);
    if (kStrict ? s > target : s >= target) tau = cand;
  }
  return tau;
}

__global__ void __launch_bounds__(kThreads) SampleKernel(SampleParams p, int64_t stride) {
  __shared__ double dscratch[kWarps];
  __shared__ uint64_t kscratch[kWarps];
  const int row = blockIdx.x;
  const SampleRow rp = p.row_params[row];
  const SamplingParams& sp = rp.params;
  float* x = p.logits + row * stride;
  double* w = p.workspace + static_cast<int64_t>(row) * p.vocab;
  const int vocab = p.vocab;

  // Penalties, as ProcessLogits: repetition on every seen token, then
  // frequency / presence on output tokens. __f*_rn keep nvcc from fusing.
  for (int j = rp.history_begin + threadIdx.x; j < rp.history_end; j += kThreads) {
    const int t = p.history_tokens[j];
    if (t < 0 || t >= vocab) continue;
    float v = x[t];
    if (sp.repetition_penalty != 1.0f) {
      v = v > 0.0f ? __fdiv_rn(v, sp.repetition_penalty) : __fmul_rn(v, sp.repetition_penalty);
    }
    const int n = p.history_output_counts[j];
    if (n > 0 && (sp.frequency_penalty != 0.0f || sp.presence_penalty != 0.0f)) {
      v = __fsub_rn(v, __fadd_rn(__fmul_rn(sp.frequency_penalty, static_cast<float>(n)),
                                 sp.presence_penalty));
    }
    x[t] = v;
  }
  __syncthreads();
  if (sp.temperature > 0.0f) {
    const float inv = 1.0f / sp.temperature;
    for (int t = threadIdx.x; t < vocab; t += kThreads) x[t] = __fmul_rn(x[t], inv);
    __syncthreads();
  }

  uint64_t best = 0;
  for (int t = threadIdx.x; t < vocab; t += kThreads) best = max(best, Key(x[t], t));
  best = BlockExtremeKey<true>(best, kscratch);
  if (sp.temperature == 0.0f) {
    if (threadIdx.x == 0) p.ids[row] = TokenOf(best);
    return;
  }
  const float max_logit = x[TokenOf(best)];

  // Candidates: the top-k keys, at or above the min-p / exp(-30) floor.
  const float floor = sp.min_p > 0.0f ? max_logit + logf(sp.min_p) : max_logit - 30.0f;
  uint64_t lo = static_cast<uint64_t>(OrderedBits(floor)) << 32;
  if (sp.top_k > 0 && sp.top_k < vocab) {
    const uint64_t kth = SearchKey<false>(
        x, vocab, 0, static_cast<double>(sp.top_k), [](int) { return 1.0; }, dscratch);
    lo = max(lo, kth);
  }
  double total = 0.0;
  for (int t = threadIdx.x; t < vocab; t += kThreads) {
    const double prob =
        Key(x[t], t) >= lo ? exp(static_cast<double>(x[t]) - static_cast<double>(max_logit)) : 0.0;
    w[t] = prob;
    total += prob;
  }
  total = BlockSumDouble(total, dscratch);  // its barriers also publish w
  auto weight = [w](int t) { return w[t]; };

  // Top-p: the shortest prefix (in sampler order) whose mass reaches top_p.
  uint64_t kept_lo = lo;
  double kept_total = total;
  if (sp.top_p < 1.0f) {
    kept_lo =
        SearchKey<false>(x, vocab, lo, static_cast<double>(sp.top_p) * total, weight, dscratch);
    double s = 0.0;
    for (int t = threadIdx.x; t < vocab; t += kThreads) {
      if (Key(x[t], t) >= kept_lo) s += w[t];
    }
    kept_total = BlockSumDouble(s, dscratch);
  }
  // Fallback when rounding leaves u at the very end: the last kept token.
  uint64_t last = ~uint64_t{0};
  for (int t = threadIdx.x; t < vocab; t += kThreads) {
    const uint64_t k = Key(x[t], t);
    if (k >= kept_lo && w[t] > 0.0) last = min(last, k);
  }
  last = BlockExtremeKey<false>(last, kscratch);

  // Inverse CDF: the first token (in sampler order) whose cumulative mass exceeds u.
  const double u = rp.uniform * kept_total;
  uint64_t chosen = SearchKey<true>(x, vocab, kept_lo, u, weight, dscratch);
  if (chosen < last) chosen = last;
  if (threadIdx.x == 0) p.ids[row] = TokenOf(chosen);
}

}  // namespace

absl::Status Sample(const SampleParams& p, const Stream& stream) {
  if (p.rows < 0 || p.vocab <= 0) return absl::InvalidArgumentError("Sample: bad shape");
  if (p.rows == 0) return absl::OkStatus();
  if (p.logits == nullptr || p.row_params == nullptr || p.workspace == nullptr ||
      p.ids == nullptr) {
    return absl::InvalidArgumentError("Sample: null pointer");
  }
  const int64_t stride = p.stride == 0 ? p.vocab : p.stride;
  if (stride < p.vocab) return absl::InvalidArgumentError("Sample: stride below vocab");
  SampleKernel<<<p.rows, kThreads, 0, static_cast<cudaStream_t>(stream.cuda_stream)>>>(p, stride);
  return LaunchStatus("SampleKernel");
}

}  // namespace tpserve::kernels::cuda
