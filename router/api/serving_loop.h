// ServingLoop: the router's engine loop. One thread owns the scheduler; it
// admits requests, builds each step, sends it to every worker rank, turns the
// sampled tokens into streamed text (incremental detokenization, stop strings
// with holdback, stop tokens, max_tokens) and closes finished streams.
//
// Self-healing: the executor runs steps in group *epochs*. When an epoch ends
// (a rank died, hung or restarted; StepExecutor::ServingEpoch() changes) the
// workers have forgotten every sequence, so the loop resets its scheduler and
// block manager and re-queues every live request with its prompt plus the
// tokens already streamed; they resume by recompute once a group serves
// again. Streams stay open and get every token exactly once (tokens of a
// failed step were never sent; sampling is a function of seed and position,
// so a resumed request continues as it would have). While no group serves,
// the loop still honours cancellations and deadlines; after
// Options::recovery_timeout it ends the waiting requests with UNAVAILABLE
// naming the cause.
//
// Pipelining: while step n runs on the workers, the loop already schedules
// step n+1 (admissions, prefix matching, block allocation, preemption); when
// n's tokens arrive only the pending decode tokens are patched in
// (Scheduler::FinalizeStep) before n+1 goes out.
//
//   ServingLoop loop(options, &worker_group, &tokenizer, &metrics);
//   loop.Start();
//   uint64_t id = loop.Submit(std::move(job));  // results arrive on job.sink
//   loop.Cancel(id);                             // client went away
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
  };

  // `executor`, `tokenizer` and `metrics` must outlive the loop.
  ServingLoop(Options options, StepExecutor* executor, const Tokenizer* tokenizer,
              RouterMetrics* metrics);
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

 private:
  struct Live;
  struct InFlight;

  void Run();
  void DrainInbox();
  void SendStep(ScheduledStep step);
  absl::Status ProcessResult(const ScheduledStep& step, const v1::StepResponse& response);
  void HandleSchedulerFinished(const std::vector<FinishedSequence>& finished);
  void FinishLive(uint64_t seq_id, FinishReason reason, v1::GenerateResponse last,
                  const std::string& stop_reason);
  void CloseLive(uint64_t seq_id, absl::Status status);
  void FailAll(const absl::Status& status);
  void ResetScheduler();
  // The serving epoch ended: a fresh scheduler holding every live request.
  void Requeue();
  // No group serves: deadlines, cancellations and the recovery timeout.
  void WhileDown(absl::Time now);
  void CloseDeadline(uint64_t seq_id);
  // Ends a sequence at its length limit, flushing held-back text.
  void FinishLength(uint64_t seq_id);

  const Options options_;
  StepExecutor* const executor_;
  const Tokenizer* const tokenizer_;
  RouterMetrics* const metrics_;
  const absl::flat_hash_set<int32_t> eos_ids_;

  std::atomic<uint64_t> next_seq_id_{1};
  std::atomic<int64_t> num_live_{0};

  absl::Mutex mu_;
  absl::CondVar wake_;  // signalled when the inbox or stopping_ changes
  std::vector<std::pair<uint64_t, GenerateJob>> inbox_adds_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> inbox_cancels_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;

  // Loop thread only.
  std::unique_ptr<Scheduler> scheduler_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Live>> live_;
  std::unique_ptr<InFlight> in_flight_;
  std::vector<uint64_t> pending_frees_;
  uint64_t epoch_ = 0;  // the executor's serving epoch this scheduler belongs to
  absl::Time down_since_ = absl::Now();
  std::atomic<int64_t> last_tick_ns_{0};  // loop iteration time, for liveness

 public:
  // When the loop thread last went round (it never blocks longer than a
  // step's deadline); the router's liveness check reads it.
  absl::Time last_tick() const { return absl::FromUnixNanos(last_tick_ns_.load()); }
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_SERVING_LOOP_H_
