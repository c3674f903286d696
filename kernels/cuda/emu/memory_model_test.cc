// The memory-transaction model's counting (memory_model.h), on kernels
// instrumented as scripts/gpu_model.sh instruments them: one warp request
// per load site, its sectors, lines and useful bytes.
#include "kernels/cuda/emu/memory_model.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/emu/grid.h"

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

// The model's output file; both variables are read once, at the model's
// first use, so every test sets them before any launch.
std::string ModelPath() {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/model.tsv";
  EXPECT_EQ(setenv("TPSERVE_CUDA_EMU_MODEL", path.c_str(), 1), 0);
  EXPECT_EQ(setenv("TPSERVE_CUDA_EMU_MODEL_BLOCKS", "2", 1), 0);
  return path;
}

TEST(MemoryModel, SixteenByteLoadIsOneRequest) {
  const std::string path = ModelPath();
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
  for (unsigned i = 0; i < 32; ++i)
    ASSERT_EQ(result[i], i + 3 * (i + 1) + 5 * (i + 2) + 7 * (i + 3));

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

// Block b's lanes load 16 bytes each from chunk b.
__global__ void CopyChunkKernel(const uint4* in, uint4* out) {
  const int i = blockIdx.x * 32 + threadIdx.x;
  out[i] = __ldg(in + i);
}

// 8 blocks with a sample of 2: counts scaled by 4, as if all 8 ran.
TEST(MemoryModel, SampledLaunchScalesItsCounts) {
  const std::string path = ModelPath();
  uint4* in = nullptr;
  uint4* out = nullptr;
  ASSERT_EQ(cudaMalloc(&in, sizeof(uint4) * 256), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&out, sizeof(uint4) * 256), cudaSuccess);
  ASSERT_EQ(cudaMemset(in, 0, sizeof(uint4) * 256), cudaSuccess);
  ASSERT_EQ(cudaMemset(out, 0xff, sizeof(uint4) * 256), cudaSuccess);
  ::tpserve_emu::ModelStart("sampled");
  Launcher("CopyChunkKernel", 8, 32) (&CopyChunkKernel)(in, out);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ::tpserve_emu::ModelStop();
  // Blocks 0 and 4 ran (evenly spread); the others wrote nothing.
  std::vector<uint32_t> host(256 * 4);
  ASSERT_EQ(cudaMemcpy(host.data(), out, sizeof(uint4) * 256, cudaMemcpyDeviceToHost), cudaSuccess);
  for (int b = 0; b < 8; ++b) {
    EXPECT_EQ(host[b * 128], b % 4 == 0 ? 0u : 0xffffffffu) << "block " << b;
  }
  // 8 requests of 4 lines, load and store.
  EXPECT_DOUBLE_EQ(::tpserve_emu::ModelLinesSinceStart(), 64.0);
  const std::vector<SiteLine> sites = Sites(path, "CopyChunkKernel");
  ASSERT_EQ(sites.size(), 2u);
  for (const SiteLine& s : sites) {
    EXPECT_EQ(s.requests, 8u);
    EXPECT_EQ(s.sectors, 128u);
    EXPECT_EQ(s.useful, 4096u);
  }
  cudaFree(in);
  cudaFree(out);
}

}  // namespace
