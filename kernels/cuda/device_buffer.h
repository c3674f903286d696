// RAII device memory for tests, benchmarks and the engine's scratch buffers.
//
//   TPS_ASSIGN_OR_RETURN(auto buf, DeviceBuffer<float>::FromHost(host_vec));
//   kernel_params.x = buf.data();
//   TPS_ASSIGN_OR_RETURN(std::vector<float> back, buf.ToHost());
#ifndef TPSERVE_KERNELS_CUDA_DEVICE_BUFFER_H_
#define TPSERVE_KERNELS_CUDA_DEVICE_BUFFER_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_status.h"

namespace tpserve::kernels::cuda {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      Reset();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { Reset(); }

  // `n` uninitialised elements (n == 0 gives an empty buffer with a null pointer).
  static absl::StatusOr<DeviceBuffer> Allocate(size_t n) {
    DeviceBuffer b;
    if (n == 0) return b;
    void* p = nullptr;
    absl::Status s = CudaStatus(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
    if (!s.ok()) return s;
    b.data_ = static_cast<T*>(p);
    b.size_ = n;
    return b;
  }

  // A device copy of `host`, complete on return: cudaMemcpy from pageable
  // memory returns once the bytes are staged, before they land, and a
  // non-blocking stream is not ordered after the legacy stream they land
  // on, so the legacy stream is synchronised too.
  static absl::StatusOr<DeviceBuffer> FromHost(const std::vector<T>& host) {
    absl::StatusOr<DeviceBuffer> b = Allocate(host.size());
    if (!b.ok() || host.empty()) return b;
    absl::Status s = CudaStatus(
        cudaMemcpy(b->data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
        "cudaMemcpy H2D");
    if (s.ok()) s = CudaStatus(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize");
    if (!s.ok()) return s;
    return b;
  }

  // Synchronous copy of the whole buffer to the host on the legacy stream:
  // it waits for the legacy and blocking streams, not for non-blocking
  // streams (synchronise those first).
  absl::StatusOr<std::vector<T>> ToHost() const {
    std::vector<T> host(size_);
    if (size_ == 0) return host;
    absl::Status s =
        CudaStatus(cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost),
                   "cudaMemcpy D2H");
    if (!s.ok()) return s;
    return host;
  }

  // Zeroes the buffer, complete on return (cudaMemset alone is asynchronous).
  absl::Status Zero() {
    if (size_ == 0) return absl::OkStatus();
    absl::Status s = CudaStatus(cudaMemset(data_, 0, size_ * sizeof(T)), "cudaMemset");
    if (!s.ok()) return s;
    return CudaStatus(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize");
  }

  T* data() const { return data_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }

 private:
  void Reset() {
    if (data_ != nullptr) cudaFree(data_);
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_DEVICE_BUFFER_H_
