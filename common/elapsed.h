// SecondsSince: wall time from `start` to now, in seconds, for step timings
// and metrics.
//
//   const absl::Time t0 = absl::Now();
//   ... work ...
//   timings.total_s = SecondsSince(t0);
#ifndef TPSERVE_COMMON_ELAPSED_H_
#define TPSERVE_COMMON_ELAPSED_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tpserve {

inline double SecondsSince(absl::Time start) { return absl::ToDoubleSeconds(absl::Now() - start); }

}  // namespace tpserve

#endif  // TPSERVE_COMMON_ELAPSED_H_
