// Pinned host staging for a step's metadata (token ids, positions, block
// tables, KV slots) on its way to the device.
//
// The step's layout vectors die when the launch returns, long before the
// stream runs the copies (cudaMemcpyAsync from pageable memory is only
// staged "if it must be", so its source has to outlive the copy). The ring
// owns the host side instead: each step copies its arrays into one pinned
// slot, enqueues the uploads from there, and records an event; a slot is
// reused only after the stream has passed that event, so a next step staged
// while this one runs never overwrites bytes a queued copy still reads.
//
//   PinnedStagingRing ring;
//   TPS_RETURN_IF_ERROR(ring.Begin(StagedBytes(layout.tokens) + StagedBytes(layout.slots)));
//   TPS_RETURN_IF_ERROR(ring.Stage(layout.tokens, d_tokens, stream, &moves));
//   TPS_RETURN_IF_ERROR(ring.Stage(layout.slots, d_slots, stream, &moves));
//   TPS_RETURN_IF_ERROR(ring.End(stream));
#ifndef TPSERVE_WORKER_ENGINE_CUDA_PINNED_STAGING_H_
#define TPSERVE_WORKER_ENGINE_CUDA_PINNED_STAGING_H_

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "common/status.h"
#include "kernels/cuda/cuda_status.h"
#include "worker/engine/cuda/device_weights.h"

namespace tpserve {

// Each staged array starts on this boundary (a DMA-friendly alignment).
inline constexpr size_t kStagingAlign = 256;

// Bytes `host` takes in a slot, alignment included.
template <typename T>
size_t StagedBytes(const std::vector<T>& host) {
  return (host.size() * sizeof(T) + kStagingAlign - 1) / kStagingAlign * kStagingAlign;
}

class PinnedStagingRing {
 public:
  // Two slots: the step in flight and the one being prepared.
  static constexpr int kSlots = 2;

  PinnedStagingRing() = default;
  PinnedStagingRing(const PinnedStagingRing&) = delete;
  PinnedStagingRing& operator=(const PinnedStagingRing&) = delete;
  ~PinnedStagingRing();

  // Takes the next slot for `bytes` of arrays: waits until the stream has
  // passed the copies of the slot's previous use, grows it if needed.
  [[nodiscard]] absl::Status Begin(size_t bytes);

  // Copies `host` into the slot and enqueues its upload into `d` (grown to
  // at least one element, counting moves as Grow does) on `stream`.
  template <typename T>
  [[nodiscard]] absl::Status Stage(const std::vector<T>& host, DeviceBuffer<T>& d,
                                   cudaStream_t stream, uint64_t* moves) {
    TPS_RETURN_IF_ERROR(Grow(d, std::max<size_t>(host.size(), 1), moves));
    if (host.empty()) return absl::OkStatus();
    TPS_ASSIGN_OR_RETURN(void* dst, Take(StagedBytes(host)));
    std::memcpy(dst, host.data(), host.size() * sizeof(T));
    TPS_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(d.data(), dst, host.size() * sizeof(T), cudaMemcpyHostToDevice, stream));
    return absl::OkStatus();
  }

  // Marks the end of the slot's copies on `stream`.
  [[nodiscard]] absl::Status End(cudaStream_t stream);

 private:
  struct Slot {
    unsigned char* host = nullptr;  // cudaMallocHost
    size_t capacity = 0;
    cudaEvent_t done = nullptr;  // recorded after the slot's copies
    bool pending = false;        // `done` was recorded and not yet waited for
  };
  absl::StatusOr<void*> Take(size_t bytes);

  std::array<Slot, kSlots> slots_;
  int current_ = -1;
  size_t used_ = 0;
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_CUDA_PINNED_STAGING_H_
