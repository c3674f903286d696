#include "worker/engine/cuda/pinned_staging.h"

#include "absl/strings/str_cat.h"

namespace tpserve {

PinnedStagingRing::~PinnedStagingRing() {
  for (Slot& s : slots_) {
    if (s.done != nullptr) {
      cudaEventSynchronize(s.done);
      cudaEventDestroy(s.done);
    }
    if (s.host != nullptr) cudaFreeHost(s.host);  // waits for the device
  }
}

absl::Status PinnedStagingRing::Begin(size_t bytes) {
  current_ = (current_ + 1) % kSlots;
  used_ = 0;
  Slot& s = slots_[current_];
  if (s.done == nullptr) {
    TPS_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
  }
  if (s.pending) {
    TPS_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(s.done));
    s.pending = false;
  }
  if (s.capacity < bytes) {
    if (s.host != nullptr) TPS_CUDA_RETURN_IF_ERROR(cudaFreeHost(s.host));
    s.host = nullptr;
    s.capacity = 0;
    // Grow geometrically so a slowly growing batch does not reallocate each step.
    const size_t want = std::max(bytes, size_t{2} * s.capacity);
    void* p = nullptr;
    TPS_CUDA_RETURN_IF_ERROR(cudaMallocHost(&p, want));
    s.host = static_cast<unsigned char*>(p);
    s.capacity = want;
  }
  return absl::OkStatus();
}

absl::StatusOr<void*> PinnedStagingRing::Take(size_t bytes) {
  if (current_ < 0) return absl::FailedPreconditionError("PinnedStagingRing: Stage before Begin");
  Slot& s = slots_[current_];
  if (used_ + bytes > s.capacity) {
    return absl::InternalError(absl::StrCat("PinnedStagingRing: staging ", used_ + bytes,
                                            " bytes in a slot of ", s.capacity,
                                            " (Begin was given too few bytes)"));
  }
  void* p = s.host + used_;
  used_ += bytes;
  return p;
}

absl::Status PinnedStagingRing::End(cudaStream_t stream) {
  if (current_ < 0) return absl::FailedPreconditionError("PinnedStagingRing: End before Begin");
  Slot& s = slots_[current_];
  TPS_CUDA_RETURN_IF_ERROR(cudaEventRecord(s.done, stream));
  s.pending = true;
  return absl::OkStatus();
}

}  // namespace tpserve
