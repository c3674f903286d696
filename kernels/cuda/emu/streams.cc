// Asynchronous streams of the CUDA emulator (streams.h).
#include "kernels/cuda/emu/streams.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

namespace tpserve_emu {

// A grid and, under programmatic dependent launch, the chain of grids it
// runs where its first blocks wait (grid.h). Immutable: a graph runs it at
// every launch.
struct GridChain {
  GridWork run;
  std::shared_ptr<const GridChain> primary;
  int length = 1;
  void Execute() const {
    if (primary == nullptr) {
      run(nullptr);
      return;
    }
    const std::function<void()> p = [this] { primary->Execute(); };
    run(&p);
  }
};

// A queued grid that a programmatic grid queued right after it may take as
// its primary, unless a thread has started it.
struct QueuedGrid {
  std::mutex mu;
  bool started = false;
  bool taken = false;
  std::shared_ptr<const GridChain> chain;
};

}  // namespace tpserve_emu

struct tpserve_emu_stream {
  bool legacy = false;
  bool non_blocking = false;
  int device = 0;
  // Graph capture (cudaStreamBeginCapture .. cudaStreamEndCapture).
  bool capturing = false;
  bool invalidated = false;
  std::vector<tpserve_emu::StreamWorkMaker> captured;
  // Queued work: items seq done+1 .. enqueued; `busy` while a thread runs one.
  struct Item {
    uint64_t seq = 0;
    tpserve_emu::StreamWork work;
    std::vector<tpserve_emu::StreamPoint> waits;
  };
  std::deque<Item> queue;
  uint64_t enqueued = 0;
  uint64_t done = 0;
  bool busy = false;
  std::vector<tpserve_emu::StreamPoint> next_waits;  // cudaStreamWaitEvent
  // Programmatic dependent launch: the last queued item if it is a grid,
  // the highest seq anyone may have waited for, and the last captured grid
  // while it is the capture's last work.
  std::shared_ptr<tpserve_emu::QueuedGrid> last_grid;
  uint64_t observed = 0;
  std::shared_ptr<const tpserve_emu::GridChain> last_captured_grid;
};

namespace tpserve_emu {
namespace {

constexpr int kMaxDevices = 8;

struct Streams {
  // std::mutex, not absl::Mutex: the emulator depends on the standard library only.
  std::mutex mu;
  std::condition_variable changed;
  std::set<tpserve_emu_stream*> live;
  tpserve_emu_stream* legacy[kMaxDevices] = {};
};
Streams& S() {
  static Streams* s = [] {
    auto* st = new Streams();
    for (int d = 0; d < kMaxDevices; ++d) {
      st->legacy[d] = new tpserve_emu_stream();
      st->legacy[d]->legacy = true;
      st->legacy[d]->device = d;
      st->live.insert(st->legacy[d]);
    }
    return st;
  }();
  return *s;
}

int CurrentDevice() {
  int d = 0;
  cudaGetDevice(&d);
  return d;
}

tpserve_emu_stream* Resolve(cudaStream_t s) {
  return s != nullptr ? s : S().legacy[CurrentDevice() % kMaxDevices];
}

// Runs `s` until its done count reaches `target`. `blocking` false: returns
// false instead of waiting (for another thread, or for not-ready work).
bool Advance(tpserve_emu_stream* s, uint64_t target, bool blocking) {
  Streams& st = S();
  for (;;) {
    tpserve_emu_stream::Item item;
    {
      std::unique_lock<std::mutex> lock(st.mu);
      if (st.live.count(s) == 0 || s->done >= target) return true;
      if (s->busy) {
        if (!blocking) return false;
        st.changed.wait(lock);
        continue;
      }
      s->busy = true;
      item = std::move(s->queue.front());
      s->queue.pop_front();
    }
    bool ready = true;
    for (const StreamPoint& w : item.waits) {
      ready = ready && Advance(w.stream, w.seq, blocking);
    }
    bool finished = ready && item.work();
    // Not-ready work (a collective waiting for its peers on another thread):
    // yield a little, then sleep, so many emulated ranks on few cores leave
    // the CPU to the threads doing the work (and to heartbeats).
    for (int polls = 0; !finished && blocking; ++polls) {
      if (polls < 64) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(polls < 1024 ? 20 : 500));
      }
      finished = item.work();
    }
    std::lock_guard<std::mutex> lock(st.mu);
    if (finished) {
      ++s->done;
    } else {
      s->queue.push_front(std::move(item));
    }
    s->busy = false;
    st.changed.notify_all();
    if (!finished) return false;
  }
}

// The stream's last seq, which the caller may now wait for (no grid queued
// later may take that work as its primary).
uint64_t Observe(tpserve_emu_stream* s) {
  s->observed = s->enqueued;
  return s->enqueued;
}
uint64_t Enqueued(tpserve_emu_stream* s) {
  std::lock_guard<std::mutex> lock(S().mu);
  return Observe(s);
}

// Queues `work` on the resolved stream `s` with the waits the CUDA rules
// give it; S().mu held.
void QueueLocked(tpserve_emu_stream* s, StreamWork work) {
  Streams& st = S();
  tpserve_emu_stream::Item item{.seq = ++s->enqueued, .work = std::move(work), .waits = {}};
  item.waits.swap(s->next_waits);
  if (s->legacy) {
    for (tpserve_emu_stream* b : st.live) {
      if (!b->legacy && !b->non_blocking && b->device == s->device && b->enqueued > b->done) {
        item.waits.push_back({b, Observe(b)});
      }
    }
  } else if (!s->non_blocking) {
    tpserve_emu_stream* l = st.legacy[s->device % kMaxDevices];
    if (l->enqueued > l->done) item.waits.push_back({l, Observe(l)});
  }
  s->queue.push_back(std::move(item));
  s->last_grid = nullptr;
}

thread_local int g_capturing_streams = 0;

}  // namespace

cudaError_t EnqueueMadeWork(cudaStream_t stream, StreamWorkMaker make) {
  if (stream != nullptr && stream->capturing) {
    stream->captured.push_back(std::move(make));
    stream->last_captured_grid = nullptr;
    return cudaSuccess;
  }
  return EnqueueWork(stream, make());
}

cudaError_t EnqueueWork(cudaStream_t stream, StreamWork work) {
  if (stream != nullptr && stream->capturing) {
    return EnqueueMadeWork(stream, [work = std::move(work)] { return work; });
  }
  if (g_capturing_streams > 0) {
    // Legacy-stream or other-stream work during a thread-local capture is
    // not allowed by the driver; it invalidates the capture.
    return cudaErrorStreamCaptureUnsupported;
  }
  tpserve_emu_stream* s = Resolve(stream);
  std::lock_guard<std::mutex> lock(S().mu);
  QueueLocked(s, std::move(work));
  return cudaSuccess;
}

cudaError_t EnqueueGrid(cudaStream_t stream, GridWork grid, bool programmatic) {
  auto chain = std::make_shared<GridChain>();
  chain->run = std::move(grid);
  if (stream != nullptr && stream->capturing) {
    // The captured work is the last captured grid: the two become one node.
    const std::shared_ptr<const GridChain> last = stream->last_captured_grid;
    if (programmatic && last != nullptr && last->length < kProgrammaticChain) {
      chain->primary = last;
      chain->length = last->length + 1;
      stream->captured.pop_back();
    }
    std::shared_ptr<const GridChain> made = chain;
    EnqueueMadeWork(stream, [made] {
      return StreamWork([made] {
        made->Execute();
        return true;
      });
    });
    stream->last_captured_grid = made;
    return cudaSuccess;
  }
  if (g_capturing_streams > 0) return cudaErrorStreamCaptureUnsupported;
  tpserve_emu_stream* s = Resolve(stream);
  std::lock_guard<std::mutex> lock(S().mu);
  std::shared_ptr<QueuedGrid> last = s->last_grid;
  if (programmatic && last != nullptr && s->observed < s->enqueued && s->next_waits.empty()) {
    std::lock_guard<std::mutex> taking(last->mu);
    if (!last->started && last->chain->length < kProgrammaticChain) {
      // Its queued item becomes a no-op; nobody can wait for it alone.
      last->taken = true;
      chain->primary = last->chain;
      chain->length = last->chain->length + 1;
    }
  }
  auto queued = std::make_shared<QueuedGrid>();
  queued->chain = chain;
  QueueLocked(s, [queued] {
    {
      std::lock_guard<std::mutex> lock(queued->mu);
      if (queued->taken) return true;
      queued->started = true;
    }
    queued->chain->Execute();
    return true;
  });
  s->last_grid = queued;
  return cudaSuccess;
}

void DrainStream(cudaStream_t stream) {
  tpserve_emu_stream* s = Resolve(stream);
  Advance(s, Enqueued(s), /*blocking=*/true);
}

bool QueryStream(cudaStream_t stream) {
  tpserve_emu_stream* s = Resolve(stream);
  return Advance(s, Enqueued(s), /*blocking=*/false);
}

void DrainDevice() {
  const int device = CurrentDevice();
  std::vector<StreamPoint> points;
  {
    std::lock_guard<std::mutex> lock(S().mu);
    for (tpserve_emu_stream* s : S().live) {
      if (s->device == device) points.push_back({s, Observe(s)});
    }
  }
  for (const StreamPoint& p : points) Advance(p.stream, p.seq, /*blocking=*/true);
}

StreamPoint LastPoint(cudaStream_t stream) {
  tpserve_emu_stream* s = Resolve(stream);
  return {s, Enqueued(s)};
}
void DrainTo(const StreamPoint& p) {
  if (p.stream != nullptr) Advance(p.stream, p.seq, true);
}
bool QueryTo(const StreamPoint& p) {
  return p.stream == nullptr || Advance(p.stream, p.seq, false);
}
void AddWait(cudaStream_t stream, const StreamPoint& p) {
  if (p.stream == nullptr) return;
  tpserve_emu_stream* s = Resolve(stream);
  std::lock_guard<std::mutex> lock(S().mu);
  s->next_waits.push_back(p);
}

cudaStream_t CreateStream(bool non_blocking) {
  auto* s = new tpserve_emu_stream();
  s->non_blocking = non_blocking;
  s->device = CurrentDevice();
  std::lock_guard<std::mutex> lock(S().mu);
  S().live.insert(s);
  return s;
}

void DestroyStream(cudaStream_t stream) {
  if (stream->capturing) --g_capturing_streams;
  stream->capturing = false;
  // Work queued on a destroyed stream still completes (the driver finishes
  // it in the background; here the destroying thread runs it).
  DrainStream(stream);
  {
    std::lock_guard<std::mutex> lock(S().mu);
    S().live.erase(stream);
  }
  delete stream;
}

bool BeginCapture(cudaStream_t stream) {
  if (stream == nullptr || stream->capturing) return false;
  stream->capturing = true;
  stream->invalidated = false;
  stream->captured.clear();
  stream->last_captured_grid = nullptr;
  ++g_capturing_streams;
  return true;
}

cudaError_t EndCapture(cudaStream_t stream, std::vector<StreamWorkMaker>* ops) {
  if (stream == nullptr || !stream->capturing) return cudaErrorIllegalState;
  stream->capturing = false;
  --g_capturing_streams;
  std::vector<StreamWorkMaker> captured = std::move(stream->captured);
  stream->captured.clear();
  if (stream->invalidated) {
    stream->invalidated = false;
    return cudaErrorStreamCaptureInvalidated;
  }
  *ops = std::move(captured);
  return cudaSuccess;
}

bool IsCapturing(cudaStream_t stream) { return stream != nullptr && stream->capturing; }
bool CapturingOnThisThread() { return g_capturing_streams > 0; }
void InvalidateCapture(cudaStream_t stream) {
  if (stream != nullptr && stream->capturing) stream->invalidated = true;
}
bool CaptureInvalidated(cudaStream_t stream) { return stream != nullptr && stream->invalidated; }

}  // namespace tpserve_emu
