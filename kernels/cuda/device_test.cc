#include "kernels/cuda/device.h"

#include "gtest/gtest.h"

namespace tpserve::kernels::cuda {
namespace {

TEST(CudaDeviceTest, DescribesEveryDevice) {
  const int n = DeviceCount();
  if (n == 0) GTEST_SKIP() << "skipped: no CUDA device";
  for (int d = 0; d < n; ++d) {
    const std::string desc = DeviceDescription(d);
    EXPECT_NE(desc.find("sm_"), std::string::npos) << desc;
  }
}

}  // namespace
}  // namespace tpserve::kernels::cuda
