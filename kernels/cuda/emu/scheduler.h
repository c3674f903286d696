// Internal to the CUDA emulator: runs one block of a kernel launch.
#ifndef TPSERVE_KERNELS_CUDA_EMU_SCHEDULER_H_
#define TPSERVE_KERNELS_CUDA_EMU_SCHEDULER_H_

#include <functional>

#include "kernels/cuda/emu/emu.h"

namespace tpserve_emu {

using KernelBody = std::function<void()>;

// Runs `body` once per thread of `block` (block.dim threads) to completion.
void RunBlock(Block& block, const KernelBody& body, const char* kernel_name);

}  // namespace tpserve_emu

#endif  // TPSERVE_KERNELS_CUDA_EMU_SCHEDULER_H_
