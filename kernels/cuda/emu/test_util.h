// Host helpers of the emulator's own tests (emu_test.cc, sm90_test.cc).
#ifndef TPSERVE_KERNELS_CUDA_EMU_TEST_UTIL_H_
#define TPSERVE_KERNELS_CUDA_EMU_TEST_UTIL_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "gtest/gtest.h"

namespace tpserve_emu::test {

// A device copy of `host` (the caller frees it).
template <typename T>
T* DeviceCopy(const std::vector<T>& host) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, host.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
            cudaSuccess);
  return d;
}

// n elements of device memory `d`, on the host.
template <typename T>
std::vector<T> HostCopy(const T* d, size_t n) {
  std::vector<T> out(n);
  EXPECT_EQ(cudaMemcpy(out.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return out;
}

}  // namespace tpserve_emu::test

#endif  // TPSERVE_KERNELS_CUDA_EMU_TEST_UTIL_H_
