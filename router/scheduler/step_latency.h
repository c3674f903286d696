// Step-latency policy of the scheduler (SchedulerConfig::target_step_latency):
// how many prefill tokens a step that carries decodes may add so that it
// lasts about the target, and the prefill rate that turns a duration into
// tokens, measured from the scheduler's own steps.
//
//   PrefillRate rate;
//   rate.Observe(/*tokens=*/512, /*seconds=*/0.25);              // per resolved step
//   int32_t cap = PrefillTokensWhileDecoding(absl::Milliseconds(100),
//                                            rate.tokens_per_second(), /*decodes=*/15);
#ifndef TPSERVE_ROUTER_SCHEDULER_STEP_LATENCY_H_
#define TPSERVE_ROUTER_SCHEDULER_STEP_LATENCY_H_

#include <cstdint>

#include "absl/time/time.h"

namespace tpserve {

// Prompts keep moving however many streams decode: no cap goes below this.
inline constexpr int32_t kMinPrefillChunk = 16;

// Prefill tokens a step with `decodes` decode tokens may add under
// `target_step_latency` at `tokens_per_second` (both > 0): the tokens that fit
// in the target, less the decodes, and never under kMinPrefillChunk.
int32_t PrefillTokensWhileDecoding(absl::Duration target_step_latency, double tokens_per_second,
                                   int32_t decodes);

// Tokens per second of resolved steps, smoothed (0.7 old + 0.3 new) so that
// one step slowed by the machine does not swing the cap. Steps of fewer than
// kMinTokens are ignored: fixed costs (RPC, sampling) dominate them.
class PrefillRate {
 public:
  static constexpr int32_t kMinTokens = 64;
  void Observe(int32_t tokens, double seconds);
  // 0 until a step has been observed.
  double tokens_per_second() const { return tokens_per_second_; }

 private:
  double tokens_per_second_ = 0.0;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_SCHEDULER_STEP_LATENCY_H_
