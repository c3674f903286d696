// Internal to the CUDA emulator: runs the blocks of one grid in a seeded
// random order on several OS threads, so a kernel that assumes an order
// between blocks (or races between them) shows seed-dependent results, and
// ThreadSanitizer reports (scripts/gpu_emu_tsan.sh).
//
//   $TPSERVE_CUDA_EMU_SEED     0: blocks in index order, fibers in thread
//                              order (the old deterministic schedule);
//                              otherwise the seed of every order (default 1).
//   $TPSERVE_CUDA_EMU_THREADS  OS threads per grid (default 2, at most 64).
//
//   RunGrid(config, check, body);  // from a stream's queued launch
//
// A cooperative launch (LaunchConfig::cooperative) runs every block at once,
// each on an OS thread of its own, so grid.sync() (GridBarrier) can hold
// them all; between two barriers the blocks really run concurrently.
#ifndef TPSERVE_KERNELS_CUDA_EMU_GRID_H_
#define TPSERVE_KERNELS_CUDA_EMU_GRID_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

#include "kernels/cuda/emu/emu.h"

namespace tpserve_emu {

// The grid barrier of one cooperative launch. A block arrives when every
// live thread of it waits at grid.sync() (scheduler.cc) and goes on once all
// blocks have; a block that ends while another waits, or arrives after
// another has ended, aborts the process (on the device the grid would hang).
class GridBarrier {
 public:
  explicit GridBarrier(uint64_t blocks) : blocks_(blocks) {}
  void Arrive();
  void Leave();  // the calling block has ended

 private:
  std::mutex mu_;
  std::condition_variable passed_;
  const uint64_t blocks_;
  uint64_t arrived_ = 0;
  uint64_t generation_ = 0;  // barriers passed
  bool ended_ = false;
  uint3 first_ended_{};
};

// The schedule's seed (0: in order).
uint64_t ScheduleSeed();

// Runs `check` once, then every block of c.grid with `body` per thread.
// `primary` (programmatic dependent launch: the grid before this one on its
// stream, not yet run): the first kProgrammaticBlocks (emu.h) blocks of the schedule
// run on the calling thread, one inside the other, each until its threads
// wait at griddepcontrol.wait (or it ends); then `primary` runs, then they
// finish, then the other blocks run. So whatever a kernel reads before its
// griddepcontrol.wait is read before the primary has written anything, the
// most the hardware allows. The memory model's counting runs `primary`
// first instead (it counts per launch).
void RunGrid(const LaunchConfig& c, const std::function<void()>& check,
             const std::function<void()>& body, const std::function<void()>* primary = nullptr);

}  // namespace tpserve_emu

#endif  // TPSERVE_KERNELS_CUDA_EMU_GRID_H_
