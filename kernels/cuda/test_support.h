// Helpers for the CUDA parity tests: skip without a device, move vectors
// (and weights, repacked) to and from the device (aborting the test binary on CUDA errors, which
// are environment failures there, not kernel results).
//
//   TEST(RmsNormParity, Random) {
//     TPS_SKIP_WITHOUT_CUDA();
//     DeviceBuffer<float> x = ToDevice(host_x);
//     ...
//     std::vector<float> got = ToHostVector(y);
//   }
#ifndef TPSERVE_KERNELS_CUDA_TEST_SUPPORT_H_
#define TPSERVE_KERNELS_CUDA_TEST_SUPPORT_H_

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/weight_layout.h"

// GPU tests report "skipped", never "passed", on a machine without a device.
#define TPS_SKIP_WITHOUT_CUDA()                         \
  do {                                                  \
    if (::tpserve::kernels::cuda::DeviceCount() == 0) { \
      GTEST_SKIP() << "skipped: no CUDA device";        \
    }                                                   \
  } while (false)

namespace tpserve::kernels::cuda {

template <typename T>
void DieIfError(const absl::StatusOr<T>& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "CUDA test setup failed: %s\n", s.status().ToString().c_str());
    std::abort();
  }
}

template <typename T>
DeviceBuffer<T> ToDevice(const std::vector<T>& host) {
  absl::StatusOr<DeviceBuffer<T>> b = DeviceBuffer<T>::FromHost(host);
  DieIfError(b);
  return *std::move(b);
}

template <typename T>
DeviceBuffer<T> DeviceZeros(size_t n) {
  absl::StatusOr<DeviceBuffer<T>> b = DeviceBuffer<T>::Allocate(n);
  DieIfError(b);
  if (!b->Zero().ok()) std::abort();
  return *std::move(b);
}

// `rows` dtype.h rows of `cols` values, uploaded in the device layout the
// GEMMs read (weight_layout.h).
inline DeviceBuffer<uint8_t> ToDeviceWeight(DType dtype, int64_t rows, int64_t cols,
                                            const std::vector<uint8_t>& host) {
  std::vector<uint8_t> packed(static_cast<size_t>(DeviceWeightBytes(dtype, rows, cols)));
  PackDeviceWeight(dtype, rows, cols, host.data(), packed.data());
  return ToDevice(packed);
}

// Waits for all queued work, then copies back.
template <typename T>
std::vector<T> ToHostVector(const DeviceBuffer<T>& b) {
  absl::StatusOr<std::vector<T>> v = b.ToHost();
  DieIfError(v);
  return *std::move(v);
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_TEST_SUPPORT_H_
