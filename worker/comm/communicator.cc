#include "worker/comm/communicator.h"

namespace tpserve {

size_t CommDTypeSize(CommDType dtype) {
  switch (dtype) {
    case CommDType::kF32:
    case CommDType::kI32:
      return 4;
    case CommDType::kBF16:
    case CommDType::kF16:
      return 2;
    case CommDType::kI64:
      return 8;
    case CommDType::kU8:
      return 1;
  }
  return 0;
}

}  // namespace tpserve
