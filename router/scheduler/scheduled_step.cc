#include "router/scheduler/scheduled_step.h"

namespace tpserve {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kDeadline:
      return "deadline";
    case FinishReason::kAborted:
      return "aborted";
  }
  return "unknown";
}

}  // namespace tpserve
