// ServingLoop: the router's engine loop. One thread owns every worker group's
// scheduler; it admits requests, places each on a group, builds each group's
// steps, sends them to the group's ranks, turns the sampled tokens into
// streamed text (incremental detokenization, stop strings with holdback, stop
// tokens, max_tokens) and closes finished streams.
//
// Groups: each StepExecutor is one tensor-parallel group with its own
// scheduler (KV block manager, prefix cache). Steps of different groups run
// concurrently, one in flight per group: the loop sends a group's next step
// as soon as its previous one answered, never waiting on another group. A new
// request goes to a serving, undrained group by router/api/placement.h
// (longest cached prefix, then load) and stays there; a drained group takes
// no new requests and finishes the ones it has.
//
// Self-healing: executors run steps in *epochs*. When a group's epoch ends (a
// rank died, hung or restarted; StepExecutor::ServingEpoch() changes) its
// workers have forgotten every sequence, so the loop resets that group's
// scheduler and places each of its live requests again, with its prompt plus
// the tokens already streamed, on a serving group (another one, or the same
// one once it serves again); they resume by recompute. Streams stay open and
// get every token exactly once (tokens of an abandoned step were never sent;
// sampling is a function of seed and position, so a resumed request continues
// as it would have). While no group serves, requests wait unplaced; the loop
// still honours cancellations and deadlines, and after
// Options::recovery_timeout without any serving group it ends them with
// UNAVAILABLE naming the cause.
//
// Pipelining: while a group's step n runs on its workers, the loop already
// schedules its step n+1 (admissions, prefix matching, block allocation,
// preemption); when n's tokens arrive only the pending decode tokens are
// patched in (Scheduler::FinalizeStep) before n+1 goes out.
//
//   ServingLoop loop(options, {&group0, &group1}, &tokenizer, &metrics);
//   loop.Start();
//   uint64_t id = loop.Submit(std::move(job));  // results arrive on job.sink
//   loop.Cancel(id);                             // client went away
//   loop.SetDrained(1, true);                    // no new placements on group 1
//   loop.Stop();                                 // open streams end UNAVAILABLE
#ifndef TPSERVE_ROUTER_API_SERVING_LOOP_H_
#define TPSERVE_ROUTER_API_SERVING_LOOP_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router/api/response_sink.h"
#include "router/api/router_metrics.h"
#include "router/api/stop_string_matcher.h"
#include "router/cluster/step_executor.h"
#include "router/scheduler/scheduler.h"
#include "router/tokenizer/incremental_detokenizer.h"
#include "router/tokenizer/tokenizer.h"

namespace tpserve {

// A validated, tokenized request.
struct GenerateJob {
  std::string request_id;
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int32_t priority = 0;  // higher runs first
  absl::Time deadline = absl::InfiniteFuture();
  absl::Time arrival = absl::Now();
  int32_t max_tokens = 0;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  std::shared_ptr<ResponseSink> sink;
};

class ServingLoop {
 public:
  struct Options {
    SchedulerConfig scheduler;
    int32_t num_blocks = 0;
    int32_t block_size = 0;
    std::vector<int32_t> eos_ids;  // end generation unless ignore_eos
    // Longest wait for a serving group before requests fail with UNAVAILABLE.
    absl::Duration recovery_timeout = absl::Minutes(5);
    // Placement override (router/api/placement.h): a group holding the
    // longest cached prefix loses to the least loaded group when its load is
    // higher by more than this many sequences.
    double placement_load_slack = 8;
    // Lean steps (worker.proto SequenceInput.delta): a running sequence's
    // parameters and block table go to the workers once per epoch, then
    // only its new blocks. false: every step carries everything.
    bool lean_steps = true;
  };

  // What the admin API and ModelInfo report per group (loop's last view).
  struct GroupSnapshot {
    int group = 0;
    uint64_t epoch = 0;  // 0 while the group does not serve
    bool drained = false;
    int64_t live = 0;  // requests placed on the group and not finished
    SchedulerMetrics scheduler;
    double load = 0;  // placement load, router/api/placement.h
    int64_t placed_total = 0;
  };

  // `executors` (one per group, index = group id), `tokenizer` and `metrics`
  // must outlive the loop.
  ServingLoop(Options options, std::vector<StepExecutor*> executors, const Tokenizer* tokenizer,
              RouterMetrics* metrics);
  ServingLoop(Options options, StepExecutor* executor, const Tokenizer* tokenizer,
              RouterMetrics* metrics)
      : ServingLoop(std::move(options), std::vector<StepExecutor*>{executor}, tokenizer, metrics) {}
  ~ServingLoop();  // Stop()

  void Start();
  // Ends every open stream with UNAVAILABLE and joins the loop thread.
  void Stop();

  // Queues `job`; returns its sequence id. Admission errors (queue full) and
  // every result arrive on job.sink.
  uint64_t Submit(GenerateJob job);
  // Cancels a submitted request; its blocks are freed at the next step.
  void Cancel(uint64_t seq_id);

  // Live requests (admitted or queued in the loop), for tests and logs.
  int64_t num_live() const { return num_live_.load(); }

  int num_groups() const { return static_cast<int>(lanes_.size()); }
  // Drained groups take no new requests; their own ones finish there. Takes
  // effect at the loop's next turn. `group` must be in [0, num_groups()).
  void SetDrained(int group, bool drained);
  // Every group's state as of the loop's last turn.
  std::vector<GroupSnapshot> Snapshot() const;

 private:
  struct Live;
  struct InFlight;
  struct Lane;

  void Run();
  void DrainInbox();
  // Follows the lane's executor epoch; true if it changed.
  bool FollowEpoch(Lane& lane);
  // One turn for a serving lane: resolve its finished step, prepare and send
  // the next. True if it did anything.
  bool Advance(Lane& lane, absl::Time now);
  void SendStep(Lane& lane, ScheduledStep step);
  absl::Status ProcessResult(Lane& lane, const ScheduledStep& step,
                             const v1::StepResponse& response);
  void HandleSchedulerFinished(const std::vector<FinishedSequence>& finished);
  void FinishLive(uint64_t seq_id, FinishReason reason, v1::GenerateResponse last,
                  const std::string& stop_reason);
  void CloseLive(uint64_t seq_id, absl::Status status);
  void FailAll(const absl::Status& status);
  // Ends `lane`'s epoch in the loop: abandons its step in flight, resets its
  // scheduler and moves every request placed on it back to unplaced_.
  void ResetLane(Lane& lane);
  // Places unplaced_ requests on serving groups (router/api/placement.h).
  void PlaceWaiting();
  // The lane `id` should run on, or -1 when none serves.
  int ChooseLane(const std::vector<int32_t>& prompt) const;
  // No group serves the unplaced requests: deadlines and the recovery timeout.
  void WhileUnplaced(absl::Time now);
  // Why groups do not serve, each named.
  std::string DownReason() const;
  void CloseDeadline(uint64_t seq_id);
  // Ends a sequence at its length limit, flushing held-back text.
  void FinishLength(uint64_t seq_id);
  Scheduler* SchedulerOf(uint64_t seq_id);
  void PublishSnapshot();

  const Options options_;
  const Tokenizer* const tokenizer_;
  RouterMetrics* const metrics_;
  const absl::flat_hash_set<int32_t> eos_ids_;

  std::atomic<uint64_t> next_seq_id_{1};
  std::atomic<int64_t> num_live_{0};

  mutable absl::Mutex mu_;
  std::vector<std::pair<uint64_t, GenerateJob>> inbox_adds_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> inbox_cancels_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int, bool>> inbox_drains_ ABSL_GUARDED_BY(mu_);
  // Bumped by every step completion: wakes the loop.
  uint64_t completions_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;  // step callbacks not yet run
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<GroupSnapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;

  // Loop thread only.
  std::vector<std::unique_ptr<Lane>> lanes_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Live>> live_;
  std::vector<uint64_t> unplaced_;  // live ids waiting for a serving group, FIFO
  absl::Time none_serving_since_ = absl::Now();
  bool any_serving_ = false;
  std::atomic<int64_t> last_tick_ns_{0};  // loop iteration time, for liveness

 public:
  // When the loop thread last went round (it never blocks longer than a
  // step's deadline); the router's liveness check reads it.
  absl::Time last_tick() const { return absl::FromUnixNanos(last_tick_ns_.load()); }
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_SERVING_LOOP_H_
