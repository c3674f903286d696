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
// `primary` (programmatic dependent launch, grid.h): called once, on this
// OS thread, when no thread can go on before it has run (every live thread
// waits at griddepcontrol.wait or at a barrier one of those blocks), or when
// the block ends without waiting; the block's static shared memory is
// saved around the call. Null: griddepcontrol.wait returns at once.
void RunBlock(Block& block, const KernelBody& body, const char* kernel_name, uint64_t seed,
              const std::function<void()>* primary = nullptr);

}  // namespace tpserve_emu

#endif  // TPSERVE_KERNELS_CUDA_EMU_SCHEDULER_H_
