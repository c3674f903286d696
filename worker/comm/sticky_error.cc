#include "worker/comm/sticky_error.h"

#include "absl/strings/str_cat.h"

namespace tpserve {

absl::Status StickyError::Check() const {
  absl::MutexLock lock(&mu_);
  if (error_.ok()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("communicator is broken by an earlier error: ", error_.ToString()));
}

void StickyError::Record(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (error_.ok()) error_ = status;
}

}  // namespace tpserve
