// CUDA device discovery, callable from plain C++ (no CUDA headers needed).
//
//   int n = tpserve::kernels::cuda::DeviceCount();  // 0 where no GPU or driver exists
//   if (n == 0) GTEST_SKIP() << "skipped: no CUDA device";
#ifndef TPSERVE_KERNELS_CUDA_DEVICE_H_
#define TPSERVE_KERNELS_CUDA_DEVICE_H_

#include <string>

namespace tpserve::kernels::cuda {

// Number of usable CUDA devices; 0 when the driver or a device is missing.
int DeviceCount();

// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)" for `device`, or the CUDA
// error text when it cannot be queried.
std::string DeviceDescription(int device);

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_DEVICE_H_
