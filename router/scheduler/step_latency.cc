#include "router/scheduler/step_latency.h"

#include <algorithm>
#include <limits>

namespace tpserve {

int32_t PrefillTokensWhileDecoding(absl::Duration target_step_latency, double tokens_per_second,
                                   int32_t decodes) {
  const double fit = absl::ToDoubleSeconds(target_step_latency) * tokens_per_second - decodes;
  if (fit >= std::numeric_limits<int32_t>::max()) return std::numeric_limits<int32_t>::max();
  return std::max(kMinPrefillChunk, static_cast<int32_t>(fit));
}

void PrefillRate::Observe(int32_t tokens, double seconds) {
  if (tokens < kMinTokens || seconds <= 0) return;
  const double rate = tokens / seconds;
  tokens_per_second_ = tokens_per_second_ == 0 ? rate : 0.7 * tokens_per_second_ + 0.3 * rate;
}

}  // namespace tpserve
