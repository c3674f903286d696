// Internal to the CUDA emulator: asynchronous streams. Work is queued per
// stream and runs only when something waits for it (a stream or event
// synchronisation or query, a synchronous copy to the host, cudaFree, a
// device synchronisation), in stream order, on the waiting thread. Ordering
// between streams follows the CUDA rules and nothing more:
//   - the legacy default stream (stream 0) of a device waits for all earlier
//     work of that device's blocking streams, and blocking streams wait for
//     earlier legacy-stream work;
//   - streams created with cudaStreamNonBlocking have no ordering with the
//     legacy stream at all;
//   - cudaStreamWaitEvent orders one stream after a recorded event.
// So a program that relies on an order CUDA does not promise reads stale or
// poisoned memory here, as it would on a device some of the time.
//
//   cudaError_t e = EnqueueWork(stream, [=] { RunSomething(); return true; });
//   DrainStream(stream);  // everything enqueued on `stream` so far has run
#ifndef TPSERVE_KERNELS_CUDA_EMU_STREAMS_H_
#define TPSERVE_KERNELS_CUDA_EMU_STREAMS_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace tpserve_emu {

// Queues `work` on `stream` (null: the current device's legacy stream), or
// records it while the stream captures a graph. Returns the capture errors
// the driver returns (legacy-stream work while this thread captures).
cudaError_t EnqueueWork(cudaStream_t stream, StreamWork work);
// The same for work made afresh at each graph launch (emu.h's StreamWorkMaker):
// queues make() now, or records `make` while the stream captures.
cudaError_t EnqueueMadeWork(cudaStream_t stream, StreamWorkMaker make);

// A kernel launch's work: runs its grid. `primary`, when set, is the kernel
// launched before it on the stream, which the grid runs where its first
// blocks wait at griddepcontrol.wait (grid.h).
using GridWork = std::function<void(const std::function<void()>* primary)>;
// Queues (or records) a grid. `programmatic` (programmatic dependent
// launch): when the work just before it on `stream` is a grid nobody can
// have waited for yet (no event, synchronisation or other work since), the
// two run as one, this grid's first blocks before the other grid. Chains
// are at most kProgrammaticChain (emu.h) grids deep (each parks blocks on
// one OS thread); the grid after a full chain runs after it.
cudaError_t EnqueueGrid(cudaStream_t stream, GridWork grid, bool programmatic);

// Runs `stream`'s queued work (and whatever it waits for) until everything
// enqueued before the call has run. Waits for work that reports not-ready.
void DrainStream(cudaStream_t stream);

// Runs what can run without waiting; true when `stream` has nothing left.
bool QueryStream(cudaStream_t stream);

// Drains every stream of the current device (cudaDeviceSynchronize,
// cudaFree). Other devices' streams are left alone, as on the hardware: a
// rank's collective waiting for its peer must not block the peer's cudaFree.
void DrainDevice();

// Position of the last work enqueued on `stream` (an event's record point),
// and waiting for / querying such a position.
struct StreamPoint {
  cudaStream_t stream = nullptr;
  uint64_t seq = 0;
};
StreamPoint LastPoint(cudaStream_t stream);
void DrainTo(const StreamPoint& p);
bool QueryTo(const StreamPoint& p);
// Makes the next work enqueued on `stream` wait for `p`.
void AddWait(cudaStream_t stream, const StreamPoint& p);

cudaStream_t CreateStream(bool non_blocking);
void DestroyStream(cudaStream_t stream);  // drains it first

// Graph capture: while a stream captures, EnqueueWork records instead of
// queueing; EndCapture hands the recorded work over (or the invalidation),
// as makers a launch calls in order to get that run's work.
bool BeginCapture(cudaStream_t stream);
cudaError_t EndCapture(cudaStream_t stream, std::vector<StreamWorkMaker>* ops);
bool IsCapturing(cudaStream_t stream);
bool CapturingOnThisThread();
void InvalidateCapture(cudaStream_t stream);
bool CaptureInvalidated(cudaStream_t stream);

}  // namespace tpserve_emu

#endif  // TPSERVE_KERNELS_CUDA_EMU_STREAMS_H_
