// The memory-transaction model's counting (memory_model.h), on kernels
// instrumented as scripts/gpu_model.sh instruments them: one warp request
// per load site, its sectors, lines and useful bytes.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/emu/grid.h"
#include "kernels/cuda/emu/memory_model.h"

namespace {

using ::tpserve_emu::Launcher;

// Each lane loads one 16-byte value and uses its words one by one (the
// pattern GCC splits into four 4-byte loads when __ldg is inlined).
__global__ void SumWordsKernel(const uint4* in, unsigned* out) {
  const uint4 v = __ldg(in + threadIdx.x);
  out[threadIdx.x] = v.x + 3 * v.y + 5 * v.z + 7 * v.w;
}

struct SiteLine {
  std::string kernel, kind;
  uint64_t requests = 0, sectors = 0, lines = 0, useful = 0;
};

// The model's lines (memory_model.cc, ModelLaunchEnd) for `kernel`.
std::vector<SiteLine> Sites(const std::string& path, const std::string& kernel) {
  std::vector<SiteLine> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string tag, launch, site;
    SiteLine s;
    std::getline(in, tag, '\t');
    std::getline(in, launch, '\t');
    std::getline(in, s.kernel, '\t');
    std::getline(in, site, '\t');
    std::getline(in, s.kind, '\t');
    in >> s.requests >> s.sectors >> s.lines >> s.useful;
    if (s.kernel == kernel) out.push_back(s);
  }
  return out;
}

TEST(MemoryModel, SixteenByteLoadIsOneRequest) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/model.tsv";
  // Read once, at the model's first use: set before any launch.
  ASSERT_EQ(setenv("TPSERVE_CUDA_EMU_MODEL", path.c_str(), 1), 0);
  std::vector<uint4> host(32);
  for (unsigned i = 0; i < 32; ++i) host[i] = uint4{i, i + 1, i + 2, i + 3};
  uint4* in = nullptr;
  unsigned* out = nullptr;
  ASSERT_EQ(cudaMalloc(&in, sizeof(uint4) * 32), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&out, sizeof(unsigned) * 32), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(in, host.data(), sizeof(uint4) * 32, cudaMemcpyHostToDevice), cudaSuccess);

  ::tpserve_emu::ModelStart("test");
  Launcher("SumWordsKernel", 1, 32) (&SumWordsKernel)(in, out);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ::tpserve_emu::ModelStop();

  std::vector<unsigned> result(32);
  ASSERT_EQ(cudaMemcpy(result.data(), out, sizeof(unsigned) * 32, cudaMemcpyDeviceToHost),
            cudaSuccess);
  for (unsigned i = 0; i < 32; ++i) ASSERT_EQ(result[i], i + 3 * (i + 1) + 5 * (i + 2) + 7 * (i + 3));

  int loads = 0, stores = 0;
  for (const SiteLine& s : Sites(path, "SumWordsKernel")) {
    if (s.kind == "load") {
      ++loads;
      // 32 lanes x 16 contiguous bytes: one request, 16 sectors, 4 lines, all used.
      EXPECT_EQ(s.requests, 1u);
      EXPECT_EQ(s.sectors, 16u);
      EXPECT_EQ(s.lines, 4u);
      EXPECT_EQ(s.useful, 512u);
    } else {
      ++stores;
      EXPECT_EQ(s.requests, 1u);
      EXPECT_EQ(s.sectors, 4u);
      EXPECT_EQ(s.useful, 128u);
    }
  }
  EXPECT_EQ(loads, 1);
  EXPECT_EQ(stores, 1);
  cudaFree(in);
  cudaFree(out);
}

}  // namespace
