// Emulator versions of the kernels/cuda/tma_sm90.cuh wrappers (same names
// and contracts), written from the PTX ISA (mbarrier; cp.async.bulk.tensor
// with a tiled tensor map, the 128-byte swizzle, complete_tx) and the
// driver's cuTensorMapEncodeTiled documentation. tma.cc implements them.
//
// As adversarial as the hardware allows:
//   - a TMA copy's destination reads as NaN bytes from its issue until it
//     lands, and it lands when no thread of the block can go on without it
//     (every live thread waits at an mbarrier or a barrier), or, with a
//     nonzero $TPSERVE_CUDA_EMU_SEED, at a seeded quarter of the scheduling
//     passes before that, reading global memory then;
//   - a phase completes only when its arrivals and transaction bytes are
//     all in, so a wait on the wrong parity, a missing expect_tx or a
//     missing arrival shows (as NaN data or as a deadlock naming the
//     waiting threads); an arrival yields, so threads the phase releases
//     may run before the arriving thread's later stores (an arrival before
//     the stores it publishes shows);
//   - a copy into shared memory an in-flight wgmma reads fails, at issue
//     and at landing; more arrivals than the count fail; a block that ends
//     with copies in flight fails;
//   - a copy completing on an mbarrier whose mbarrier.init its thread has
//     not fenced for the async proxy (fence.mbarrier_init, or
//     fence.proxy.async as the CUDA programming guide's TMA example does)
//     fails;
//   - setmaxnreg: a count not a multiple of 8 in [24, 256], threads of one
//     warpgroup executing different ones, a warpgroup only some of whose
//     threads executed it, or warpgroups' counts summing past what a block
//     of its size can have been given at launch (65536 registers per SM in
//     256-register units per warp: 64512 for 384 threads; warpgroups
//     without a setmaxnreg count nothing) fail.
// Tensor maps: 2D, row-major, 128-byte boxes in the 128-byte swizzle only
// (what EncodeTensorMapBf16 makes), destinations 1024-byte aligned in
// dynamic shared memory; mbarriers anywhere in shared memory, 8-byte aligned.
#ifndef TPSERVE_KERNELS_CUDA_EMU_TMA_SM90_EMU_H_
#define TPSERVE_KERNELS_CUDA_EMU_TMA_SM90_EMU_H_

#include <cstdint>

#include "kernels/cuda/emu/emu.h"

namespace tpserve_emu {

// What the emulator keeps in a TensorMap's 128 bytes.
struct TensorMapFields {
  const void* base;
  int64_t rows, cols;  // elements
  int64_t row_stride_bytes;
  int box_rows, box_cols;
  int elem_bytes;
};
void EncodeTensorMap(void* map, const TensorMapFields& f);

void MbarrierInit(const void* bar, uint32_t count);
// fence.mbarrier_init: the calling thread's mbarrier inits become visible
// to the async proxy.
void FenceMbarrierInits();
// expect_tx(tx_bytes), then one arrival.
void MbarrierArrive(const void* bar, uint32_t tx_bytes);
// expect_tx(tx_bytes) alone.
void MbarrierExpectTx(const void* bar, uint32_t tx_bytes);
// The calling fiber waits until the phase of parity `parity` has completed
// (scheduler.cc).
void MbarrierWait(const void* bar, uint32_t parity);
bool MbarrierPhaseDone(const void* bar, uint32_t parity);
// Lets the block's other runnable threads run now (scheduler.cc): an
// arrival yields, so threads a completed phase releases may run before the
// arriving thread's next instructions, as on the hardware.
void YieldToOtherThreads();
void TmaLoad2d(void* dst, const void* map, int c0, int c1, const void* bar);
// Lands every TMA copy in flight in the running block; false if none was.
bool LandTmaCopies();
// setmaxnreg.{inc,dec}.sync.aligned.u32 regs by the calling thread.
void SetMaxRegisters(int regs, bool inc);
// At the block's end: fails if a warpgroup's threads did not all execute
// its setmaxnreg.
void CheckSetMaxRegistersAtEnd(const Block& block);

}  // namespace tpserve_emu

namespace tpserve::kernels::cuda {

struct TensorMap;  // kernels/cuda/tma.h

__device__ __forceinline__ void MbarrierInit(uint64_t* bar, uint32_t count) {
  ::tpserve_emu::MbarrierInit(bar, count);
}
__device__ __forceinline__ void FenceMbarrierInit() { ::tpserve_emu::FenceMbarrierInits(); }
__device__ __forceinline__ void MbarrierArriveExpectTx(uint64_t* bar, uint32_t bytes) {
  ::tpserve_emu::MbarrierArrive(bar, bytes);
}
__device__ __forceinline__ void MbarrierExpectTx(uint64_t* bar, uint32_t bytes) {
  ::tpserve_emu::MbarrierExpectTx(bar, bytes);
}
__device__ __forceinline__ void MbarrierArrive(uint64_t* bar) {
  ::tpserve_emu::MbarrierArrive(bar, 0);
}
__device__ __forceinline__ void MbarrierWait(uint64_t* bar, uint32_t parity) {
  ::tpserve_emu::MbarrierWait(bar, parity);
}
__device__ __forceinline__ void TmaLoadTile2d(void* dst, const TensorMap* map, int c0, int c1,
                                              uint64_t* bar) {
  ::tpserve_emu::TmaLoad2d(dst, map, c0, c1, bar);
}
template <int kRegs>
__device__ __forceinline__ void SetMaxRegistersDec() {
  ::tpserve_emu::SetMaxRegisters(kRegs, false);
}
template <int kRegs>
__device__ __forceinline__ void SetMaxRegistersInc() {
  ::tpserve_emu::SetMaxRegisters(kRegs, true);
}

}  // namespace tpserve::kernels::cuda

#endif  // TPSERVE_KERNELS_CUDA_EMU_TMA_SM90_EMU_H_
