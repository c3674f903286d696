// Internal to the CUDA emulator: a memory-transaction MODEL (not a
// measurement) of the kernels it runs. Built only with
// --copt=-DTPSERVE_EMU_MEMORY_MODEL plus GCC's address-sanitizer
// instrumentation in callback mode (scripts/gpu_model.sh has the flags),
// which makes every load and store of the kernels call back here with its
// address, size and call site. Accesses to device memory are grouped per
// warp request: the n-th execution of one load/store site by the 32 lanes
// of a warp is one request, as on the hardware when the warp is converged.
// Per request it counts the 32-byte sectors and 128-byte lines the lanes
// touch and the distinct bytes they use; per launch, the distinct sectors
// (the DRAM traffic if L2 holds the kernel's working set).
//
// With $TPSERVE_CUDA_EMU_MODEL set to a file path, every launch appends one
// line per load/store site to that file (tab-separated, see ModelLaunchEnd).
//
// Sampling, for shapes too big to emulate whole: with
// $TPSERVE_CUDA_EMU_MODEL_BLOCKS=N, a counted launch of more than N blocks
// runs only N of them, evenly spread over the grid, and every count it
// reports is scaled by blocks / N. The launch's output is then incomplete:
// a mode for modelling benchmarks (kernel_bench), never for results. The
// scaled distinct bytes over-count operands that blocks share.
//
//   const uint64_t run = ModelSampledBlocks(blocks);
//   ModelLaunchBegin("GemmKernel", blocks, run);  ... blocks run ...  ModelLaunchEnd();
#ifndef TPSERVE_KERNELS_CUDA_EMU_MEMORY_MODEL_H_
#define TPSERVE_KERNELS_CUDA_EMU_MEMORY_MODEL_H_

#include <cstddef>
#include <cstdint>

namespace tpserve_emu {

// Whether this build counts now (compiled with TPSERVE_EMU_MEMORY_MODEL,
// $TPSERVE_CUDA_EMU_MODEL set, inside ModelStart .. ModelStop).
bool ModelEnabled();

// Counting is on only between ModelStart(tag) and ModelStop(); `tag` is the
// first column of every line written meanwhile (a decode step's name).
void ModelStart(const char* tag);
void ModelStop();

// How many of a launch's `blocks` to run (all of them unless sampling).
uint64_t ModelSampledBlocks(uint64_t blocks);
void ModelLaunchBegin(const char* kernel, uint64_t blocks, uint64_t blocks_run);
void ModelLaunchEnd();
// 128-byte lines requested by the launches counted since ModelStart,
// scaled where sampled: kernel_bench's model mode turns them into an L1 time.
double ModelLinesSinceStart();
// The block about to run on this OS thread, and its end (requests are
// grouped per block; `threads` is the block's size).
void ModelBlockBegin(unsigned threads);
void ModelBlockEnd();
// The fiber now running on this OS thread.
void ModelSetThread(int linear);
// One access by the running fiber (cp.async's global read calls it
// directly: it goes through memcpy, which is not instrumented).
void ModelAccess(const void* addr, size_t bytes, bool store, const void* site);

}  // namespace tpserve_emu

#endif  // TPSERVE_KERNELS_CUDA_EMU_MEMORY_MODEL_H_
