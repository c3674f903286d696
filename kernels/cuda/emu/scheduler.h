// Internal to the CUDA emulator: runs one block of a kernel launch.
#ifndef TPSERVE_KERNELS_CUDA_EMU_SCHEDULER_H_
#define TPSERVE_KERNELS_CUDA_EMU_SCHEDULER_H_

#include <cstdint>
#include <functional>

#include "kernels/cuda/emu/emu.h"

namespace tpserve_emu {

using KernelBody = std::function<void()>;

// Runs `body` once per thread of `block` (block.dim threads) to completion.
// `seed` 0: runnable fibers resume in thread order; otherwise in an order
// drawn from `seed` anew for every barrier interval. Static __shared__
// variables this OS thread has seen are poisoned (NaN bytes) first.
void RunBlock(Block& block, const KernelBody& body, const char* kernel_name, uint64_t seed);

}  // namespace tpserve_emu

#endif  // TPSERVE_KERNELS_CUDA_EMU_SCHEDULER_H_
