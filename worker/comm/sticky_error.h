// The first error of a host communicator. After a failed or aborted
// collective the ranks no longer agree on what was exchanged, so every later
// call must fail until the group is rebuilt; StickyError keeps that first
// error and turns later calls away with a message that names it.
//
//   StickyError error_;
//   TPS_RETURN_IF_ERROR(error_.Check());   // FAILED_PRECONDITION once broken
//   absl::Status s = RunCollective();
//   if (!s.ok()) error_.Record(s);        // the first error wins
#ifndef TPSERVE_WORKER_COMM_STICKY_ERROR_H_
#define TPSERVE_WORKER_COMM_STICKY_ERROR_H_

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace tpserve {

// Thread-safe: Abort() records from another thread than the collectives.
class StickyError {
 public:
  // OK while nothing is recorded; afterwards FAILED_PRECONDITION naming the
  // recorded error.
  [[nodiscard]] absl::Status Check() const;

  // Keeps `status` unless an error is already kept; OK is ignored.
  void Record(const absl::Status& status);

 private:
  mutable absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_COMM_STICKY_ERROR_H_
