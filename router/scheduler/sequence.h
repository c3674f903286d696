// Internal to the scheduler: one request's state machine and bookkeeping.
//
//   Add()                     admitted (blocks, first chunk)
//   ─────▶ kWaiting ─────────────────────────────▶ kRunning ──▶ finished
//             ▲                                       │   (Finish, Cancel,
//             └──── preempted ◀── out of KV blocks ───┘    deadline, length:
//                    (blocks freed; re-prefills prompt     blocks freed, the
//                     + generated tokens when admitted)    Sequence erased)
//
// kWaiting sequences (new or preempted: num_preemptions tells them apart)
// sit in the waiting queue and hold no blocks; kRunning ones hold blocks
// covering [0, num_computed).
#ifndef TPSERVE_ROUTER_SCHEDULER_SEQUENCE_H_
#define TPSERVE_ROUTER_SCHEDULER_SEQUENCE_H_

#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "router/scheduler/scheduled_step.h"

namespace tpserve::scheduler_internal {

enum class SeqState { kWaiting, kRunning };

struct Sequence {
  uint64_t id = 0;
  SeqState state = SeqState::kWaiting;
  int32_t priority = 0;
  uint64_t arrival = 0;         // global order: FIFO within a priority
  std::vector<int32_t> tokens;  // prompt + generated tokens known so far
  int32_t prompt_len = 0;
  int32_t num_pending = 0;    // sampled by scheduled steps, not reported yet
  int32_t num_computed = 0;   // KV written or being written by scheduled steps
  int32_t num_committed = 0;  // KV written by resolved steps
  bool cancel_requested = false;
  bool on_workers = false;  // appeared in a step since it was last freed there
  uint64_t epoch = 0;       // new at every admission; ties step records to it
  uint64_t preempted_in_step = 0;
  int32_t cached_tokens = -1;  // prefix-cache hit at first admission; -1 before
  int32_t num_preemptions = 0;
  absl::Time deadline = absl::InfiniteFuture();
  SamplingParams sampling;

  bool running() const { return state == SeqState::kRunning; }
  // Known tokens plus the ones in flight.
  int32_t total_len() const { return static_cast<int32_t>(tokens.size()) + num_pending; }
};

// Rank order: higher priority first, then earlier arrival. Preemption takes
// the last running sequence in this order.
struct RankLess {
  bool operator()(const Sequence* a, const Sequence* b) const {
    if (a->priority != b->priority) return a->priority > b->priority;
    return a->arrival < b->arrival;
  }
};

}  // namespace tpserve::scheduler_internal

#endif  // TPSERVE_ROUTER_SCHEDULER_SEQUENCE_H_
