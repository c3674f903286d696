#include "worker/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace tpserve {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Penalised (and, when sampling, temperature-scaled) logits.
std::vector<float> ProcessLogits(absl::Span<const float> logits, const SamplingParams& p,
                                 const TokenHistory& h) {
  std::vector<float> x(logits.begin(), logits.end());
  const int64_t vocab = static_cast<int64_t>(x.size());
  if (p.repetition_penalty != 1.0f) {
    std::vector<bool> seen(vocab, false);
    for (const std::vector<int32_t>* v : {&h.prompt, &h.output}) {
      for (int32_t t : *v) {
        if (t >= 0 && t < vocab) seen[t] = true;
      }
    }
    for (int64_t t = 0; t < vocab; ++t) {
      if (!seen[t]) continue;
      x[t] = x[t] > 0 ? x[t] / p.repetition_penalty : x[t] * p.repetition_penalty;
    }
  }
  if (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
    std::unordered_map<int32_t, int> counts;
    for (int32_t t : h.output) {
      if (t >= 0 && t < vocab) ++counts[t];
    }
    for (const auto& [t, n] : counts) {
      x[t] -= p.frequency_penalty * n + p.presence_penalty;
    }
  }
  if (p.temperature > 0.0f) {
    const float inv = 1.0f / p.temperature;
    for (float& v : x) v *= inv;
  }
  return x;
}

}  // namespace

double SampleUniform(uint64_t seed, int64_t position) {
  uint64_t bits = SplitMix64(SplitMix64(seed) ^ static_cast<uint64_t>(position));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) {
    return absl::InvalidArgumentError(absl::StrCat("temperature ", p.temperature, " must be >= 0"));
  }
  if (p.top_k < 0) return absl::InvalidArgumentError(absl::StrCat("top_k ", p.top_k, " < 0"));
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p ", p.top_p, " must be in (0, 1]"));
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("min_p ", p.min_p, " must be in [0, 1]"));
  }
  if (!(p.repetition_penalty > 0.0f) || !std::isfinite(p.repetition_penalty)) {
    return absl::InvalidArgumentError(
        absl::StrCat("repetition_penalty ", p.repetition_penalty, " must be > 0"));
  }
  if (!std::isfinite(p.presence_penalty) || !std::isfinite(p.frequency_penalty)) {
    return absl::InvalidArgumentError("presence/frequency penalties must be finite");
  }
  if (p.top_logprobs < 0 || p.top_logprobs > 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_logprobs ", p.top_logprobs, " must be in [0, 20]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<SampledToken> SampleToken(absl::Span<const float> logits,
                                         const SamplingParams& params, const TokenHistory& history,
                                         int64_t position) {
  TPS_RETURN_IF_ERROR(ValidateSamplingParams(params));
  if (logits.empty()) return absl::InvalidArgumentError("empty logits");
  const std::vector<float> x = ProcessLogits(logits, params, history);
  const int32_t vocab = static_cast<int32_t>(x.size());

  int32_t chosen = 0;
  if (params.temperature == 0.0f) {
    chosen = static_cast<int32_t>(std::max_element(x.begin(), x.end()) - x.begin());
  } else {
    // Candidates best first; top-k bounds how many are sorted.
    const int32_t k = params.top_k > 0 ? std::min(params.top_k, vocab) : vocab;
    std::vector<int32_t> idx(vocab);
    std::iota(idx.begin(), idx.end(), 0);
    auto better = [&](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
    if (k < vocab) {
      std::nth_element(idx.begin(), idx.begin() + k, idx.end(), better);
      idx.resize(k);
    }
    // min-p and the softmax only need the maximum; drop tokens whose
    // probability is negligible before sorting (exp(-30) ~ 1e-13 of the max).
    const float max_logit = x[*std::min_element(idx.begin(), idx.end(), better)];
    const float floor =
        params.min_p > 0.0f ? max_logit + std::log(params.min_p) : max_logit - 30.0f;
    idx.erase(std::remove_if(idx.begin(), idx.end(), [&](int32_t t) { return x[t] < floor; }),
              idx.end());
    std::sort(idx.begin(), idx.end(), better);
    std::vector<double> prob(idx.size());
    double total = 0.0;
    for (size_t i = 0; i < idx.size(); ++i) {
      prob[i] = std::exp(static_cast<double>(x[idx[i]]) - max_logit);
      total += prob[i];
    }
    size_t keep = idx.size();
    if (params.top_p < 1.0f) {
      double cum = 0.0;
      for (size_t i = 0; i < idx.size(); ++i) {
        cum += prob[i] / total;
        if (cum >= params.top_p) {
          keep = i + 1;
          break;
        }
      }
    }
    double kept_total = std::accumulate(prob.begin(), prob.begin() + keep, 0.0);
    double u = SampleUniform(params.seed, position) * kept_total;
    chosen = idx[keep - 1];
    for (size_t i = 0; i < keep; ++i) {
      if (u < prob[i]) {
        chosen = idx[i];
        break;
      }
      u -= prob[i];
    }
  }

  SampledToken out;
  out.token = chosen;
  if (params.logprobs || params.top_logprobs > 0) {
    const float m = *std::max_element(x.begin(), x.end());
    double sum = 0.0;
    for (float v : x) sum += std::exp(static_cast<double>(v) - m);
    const float log_z = m + static_cast<float>(std::log(sum));
    out.logprob = x[chosen] - log_z;
    if (params.top_logprobs > 0) {
      const int32_t n = std::min(params.top_logprobs, vocab);
      std::vector<int32_t> idx(vocab);
      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), [&](int32_t a, int32_t b) {
        return x[a] > x[b] || (x[a] == x[b] && a < b);
      });
      for (int32_t i = 0; i < n; ++i) out.top_logprobs.push_back({idx[i], x[idx[i]] - log_z});
    }
  }
  return out;
}

bool UsesHistory(const SamplingParams& p) {
  return p.repetition_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
}

void AppendDistinctHistory(const TokenHistory& history, std::vector<int32_t>* tokens,
                           std::vector<int32_t>* output_counts) {
  std::map<int32_t, int32_t> distinct;  // token -> output count
  for (int32_t t : history.prompt) distinct.emplace(t, 0);
  for (int32_t t : history.output) ++distinct[t];
  for (const auto& [t, n] : distinct) {
    tokens->push_back(t);
    output_counts->push_back(n);
  }
}

}  // namespace tpserve
