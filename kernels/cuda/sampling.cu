// cuda::Sample: one 1024-thread block per logits row; see sampling.h for the
// algorithm and why every cut is a key threshold.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/sampling.h"
#include "kernels/cuda/shared_memory.cuh"

namespace tpserve::kernels::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
// Candidates a row keeps in shared memory (keys and weights: 32 KiB). Rows
// with more candidates (a flat distribution, no top-k or min-p) search the
// vocabulary in global memory instead.
constexpr int kCandidates = 2048;
constexpr size_t kSampleSharedBytes = kCandidates * (sizeof(uint64_t) + sizeof(double));

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
// F(tau) = sum of weight(i) over items i < n with key(i) >= max(tau, lo). F
// is a non-increasing step function that drops right after each item's key,
// so tau is an item's key whenever F(lo) passes the test; 0 otherwise. Items
// are the vocabulary (key(t) = Key(x[t], t)) or the compacted candidates.
template <bool kStrict, typename KeyOf, typename Weight>
__device__ uint64_t SearchKey(int n, KeyOf key, uint64_t lo, double target, Weight weight,
                              double* scratch) {
  uint64_t tau = 0;
  for (int bit = 63; bit >= 0; --bit) {
    const uint64_t cand = tau | (uint64_t{1} << bit);
    const uint64_t thr = max(cand, lo);
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += kThreads) {
      if (key(i) >= thr) s += weight(i);
    }
    s = BlockSumDouble(s, scratch);
    if (kStrict ? s > target : s >= target) tau = cand;
  }
  return tau;
}

// Number of tokens with Key(x[t], t) >= lo.
__device__ int CountAtLeast(const float* x, int vocab, uint64_t lo, double* scratch) {
  double n = 0.0;
  for (int t = threadIdx.x; t < vocab; t += kThreads) n += Key(x[t], t) >= lo ? 1.0 : 0.0;
  return static_cast<int>(BlockSumDouble(n, scratch));
}

// Copies the keys >= lo, in token order, to keys[0, count) (count <= its
// capacity: the caller counted them), so later passes read shared memory
// instead of the vocabulary. One ballot per warp and chunk keeps the order.
__device__ void Compact(const float* x, int vocab, uint64_t lo, uint64_t* keys, int* warp_counts) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  int base = 0;
  for (int start = 0; start < vocab; start += kThreads) {
    const int t = start + threadIdx.x;
    const uint64_t k = t < vocab ? Key(x[t], t) : 0;
    const bool keep = t < vocab && k >= lo;
    const unsigned ballot = __ballot_sync(0xffffffffu, keep);
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    int before = base;
    for (int w = 0; w < warp; ++w) before += warp_counts[w];
    if (keep) keys[before + __popc(ballot & ((1u << lane) - 1u))] = k;
    for (int w = warp; w < kWarps; ++w) before += warp_counts[w];
    base = before;  // every thread: the chunk's total added
    __syncthreads();
  }
}

// Top-p, then the inverse-CDF draw, over items i < n with weight(i) > 0 at
// keys >= lo (0 elsewhere): the token every thread returns.
template <typename KeyOf, typename Weight>
__device__ int Draw(int n, KeyOf key, Weight weight, uint64_t lo, float top_p, double uniform,
                    double* dscratch, uint64_t* kscratch) {
  double total = 0.0;
  for (int i = threadIdx.x; i < n; i += kThreads) total += weight(i);
  total = BlockSumDouble(total, dscratch);
  // Top-p: the shortest prefix (in sampler order) whose mass reaches top_p.
  uint64_t kept_lo = lo;
  double kept_total = total;
  if (top_p < 1.0f) {
    kept_lo = SearchKey<false>(n, key, lo, static_cast<double>(top_p) * total, weight, dscratch);
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += kThreads) {
      if (key(i) >= kept_lo) s += weight(i);
    }
    kept_total = BlockSumDouble(s, dscratch);
  }
  // Fallback when rounding leaves u at the very end: the last kept token.
  uint64_t last = ~uint64_t{0};
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const uint64_t k = key(i);
    if (k >= kept_lo && weight(i) > 0.0) last = min(last, k);
  }
  last = BlockExtremeKey<false>(last, kscratch);
  // Inverse CDF: the first token (in sampler order) whose cumulative mass exceeds u.
  uint64_t chosen = SearchKey<true>(n, key, kept_lo, uniform * kept_total, weight, dscratch);
  if (chosen < last) chosen = last;
  return TokenOf(chosen);
}

__global__ void __launch_bounds__(kThreads) SampleKernel(SampleParams p, int64_t stride) {
  __shared__ double dscratch[kWarps];
  __shared__ uint64_t kscratch[kWarps];
  __shared__ int warp_counts[kWarps];
  // The compacted candidates (kSampleSharedBytes of dynamic shared memory:
  // the emulator keeps static __shared__ in every thread's TLS).
  uint64_t* ckeys = DynamicSharedMemory<uint64_t>();
  double* cweights = reinterpret_cast<double*>(ckeys + kCandidates);
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
  auto vocab_key = [x](int t) { return Key(x[t], t); };
  auto cand_key = [ckeys](int i) { return ckeys[i]; };
  auto one = [](int) { return 1.0; };
  int count = CountAtLeast(x, vocab, lo, dscratch);
  if (sp.top_k > 0 && count > sp.top_k) {
    // The k-th key; keys are distinct, so exactly top_k tokens remain.
    if (count > kCandidates) {
      lo = max(lo,
               SearchKey<false>(vocab, vocab_key, 0, static_cast<double>(sp.top_k), one, dscratch));
    } else {
      Compact(x, vocab, lo, ckeys, warp_counts);
      lo = max(lo,
               SearchKey<false>(count, cand_key, 0, static_cast<double>(sp.top_k), one, dscratch));
    }
    count = sp.top_k;
  }
  int chosen;
  if (count <= kCandidates) {
    // Usual (top-k, min-p or a peaked distribution): every later pass reads
    // the candidates from shared memory.
    Compact(x, vocab, lo, ckeys, warp_counts);
    for (int i = threadIdx.x; i < count; i += kThreads) {
      cweights[i] = exp(static_cast<double>(x[TokenOf(ckeys[i])]) - static_cast<double>(max_logit));
    }
    chosen = Draw(
        count, cand_key, [cweights](int i) { return cweights[i]; }, lo, sp.top_p, rp.uniform,
        dscratch, kscratch);
  } else {
    for (int t = threadIdx.x; t < vocab; t += kThreads) {
      w[t] = Key(x[t], t) >= lo ? exp(static_cast<double>(x[t]) - static_cast<double>(max_logit))
                                : 0.0;
    }
    chosen = Draw(
        vocab, vocab_key, [w](int t) { return w[t]; }, lo, sp.top_p, rp.uniform, dscratch,
        kscratch);
  }
  if (threadIdx.x == 0) p.ids[row] = chosen;
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
  SampleKernel<<<p.rows, kThreads, kSampleSharedBytes,
                 static_cast<cudaStream_t>(stream.cuda_stream)>>>(p, stride);
  return LaunchStatus("SampleKernel");
}

}  // namespace tpserve::kernels::cuda
