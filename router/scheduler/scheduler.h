// Continuous-batching scheduler: request state machines, admission control
// and the per-step ragged batch.
//
// Every Schedule() builds one step under a token budget and a sequence limit:
//   1. drops cancelled, expired and length-capped sequences (freeing blocks);
//   2. one decode token for each running sequence that is decoding (decode first);
//   3. the next prefill chunk of running sequences still in prefill;
//   4. admits waiting sequences (priority high to low, FIFO within one), reusing
//      cached prompt prefixes, with a chunk of whatever budget is left.
// A chunk may have any length and start anywhere; one that does not reach the
// end of the sequence's known tokens has sample == false. When KV blocks run
// out the lowest-ranked running sequence (lowest priority, then latest
// arrival) is preempted by recompute: its blocks are freed and it waits again
// with prompt + generated tokens to re-prefill. A waiting request preempts
// only running ones of strictly lower priority.
//
// Thread-safe (one internal absl::Mutex held for each public call's whole
// body). The router's ServingLoop confines its scheduler to the loop thread
// (RPC threads hand Add/Cancel to the loop's inbox), so there the mutex is
// never contended. It stays because an uncontended lock is one atomic
// operation per call, small next to the step's worker round trip, and it
// keeps the scheduler correct for a caller that adds from other threads
// (scheduler_test's AddAndCancelFromOtherThreadsWhileScheduling).
// Step lifecycle, driven by the router's step loop:
//
//   Scheduler sched(config, num_blocks, block_size);
//   TPS_RETURN_IF_ERROR(sched.Add({.seq_id = 1, .prompt = ids, .priority = 0}));
//   while (...) {
//     ScheduledStep step = sched.Schedule(absl::Now());
//     TPS_RETURN_IF_ERROR(sched.FinalizeStep(&step));
//     if (!step.empty()) result = RunOnWorkers(step);   // + step.free_seq_ids
//     TPS_RETURN_IF_ERROR(sched.OnStepResult(step.step_id, result.tokens));
//     for (each sampled token that hits eos / stop / max_tokens)
//       sched.Finish(seq_id, FinishReason::kStop);
//   }
//
// Pipelining (prepare step n+1 while step n runs): Schedule() may be called
// while exactly one step is unresolved (sent, OnStepResult not yet called).
// Sequences whose token from step n is still unknown get a decode slot whose
// token is kPendingToken; everything else (admissions, prefix matching, block
// allocation, preemption, block tables) is done ahead. After step n's
// OnStepResult and the router's Finish calls, FinalizeStep(&next) fills the
// pending tokens, drops sequences finished meanwhile (adding them to
// free_seq_ids) and makes `next` ready to send:
//
//   ScheduledStep cur = ...;  send(cur);
//   loop {
//     ScheduledStep next = sched.Schedule(now);         // overlaps step n
//     result = wait(cur);
//     sched.OnStepResult(cur.step_id, result.tokens);   // step n resolved
//     ... Finish() stopped sequences ...
//     sched.FinalizeStep(&next);                        // cheap: patch + drop
//     send(next); cur = std::move(next);
//   }
//
// This is correct because workers run steps in order: blocks freed while a
// step is in flight are only written by later steps, and only blocks whose KV
// an already resolved step wrote are offered to the prefix cache. A decode
// slot prepared for a sequence that then stops costs only that slot.
//
// Empty steps (no seqs) are not tracked: sending or resolving them is optional.
// With no step in flight, Schedule() returns an empty step only when no
// sequence is live (HasWork() is false), so a router loop never spins on one.
// A sequence preempted while step n runs keeps the token step n samples for
// it (stream it to the client); it re-prefills that token too.
#ifndef TPSERVE_ROUTER_SCHEDULER_SCHEDULER_H_
#define TPSERVE_ROUTER_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "router/scheduler/scheduled_step.h"

namespace tpserve {

class BlockManager;

struct SchedulerConfig {
  int32_t max_num_batched_tokens = 2048;  // token budget per step
  int32_t max_num_seqs = 256;             // sequences per step and running at once
  int32_t max_waiting = 1024;             // Add() beyond this: RESOURCE_EXHAUSTED
  // Longest sequence (prompt + output) in tokens; 0 or larger than the KV
  // cache means num_blocks * block_size. Sequences reaching it finish with
  // kLength.
  int32_t max_model_len = 0;
  // Admissions leave at least this many blocks available, so that running
  // sequences can grow without immediate preemption.
  int32_t admission_watermark_blocks = 0;
  bool enable_prefix_cache = true;
  // Step latency while sequences decode (step_latency.h): a step that carries
  // decode tokens takes at most PrefillTokensWhileDecoding() prefill tokens, so a long
  // prompt is spread over steps of about this length instead of stalling
  // every running stream for one long step (their inter-token latency). The
  // rate is prefill_tokens_per_second, or when that is 0 the scheduler's own
  // measurement (tokens / (result time - FinalizeStep time) of resolved steps
  // with >= 64 tokens, smoothed). Zero duration: off (the token budget alone).
  absl::Duration target_step_latency = absl::ZeroDuration();
  double prefill_tokens_per_second = 0.0;
};

// INVALID_ARGUMENT naming the bad field, or OK.
absl::Status ValidateSchedulerConfig(const SchedulerConfig& config, int32_t num_blocks,
                                     int32_t block_size);

struct SchedulerRequest {
  uint64_t seq_id = 0;  // chosen by the router, unique among live sequences
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int32_t priority = 0;  // higher runs first
  absl::Time deadline = absl::InfiniteFuture();
  // Resuming a sequence whose worker group failed: `prompt` holds the
  // original prompt followed by the tokens already generated (and streamed),
  // and prompt_len is the original prompt's length (penalties and positions
  // treat the rest as output). Such a request was admitted before, so the
  // waiting-queue bound does not apply. -1: a new request, all prompt.
  int32_t prompt_len = -1;
};

// Snapshot for metrics. Counters are cumulative; prefix numbers in tokens.
// tpserve_iteration_tokens: observe ScheduledStep::num_tokens per sent step.
struct SchedulerMetrics {
  int64_t num_running = 0;                 // tpserve_num_requests_running
  int64_t num_waiting = 0;                 // tpserve_num_requests_waiting (incl. preempted)
  int64_t num_waiting_tokens = 0;          // tokens the waiting sequences will (re-)prefill
  double kv_cache_usage_ratio = 0.0;       // tpserve_kv_cache_usage_ratio
  int64_t num_preemptions_total = 0;       // tpserve_num_preemptions_total
  int64_t prefix_cache_queries_total = 0;  // tpserve_prefix_cache_queries_total
  int64_t prefix_cache_hits_total = 0;     // tpserve_prefix_cache_hits_total
  int64_t num_steps_total = 0;             // non-empty steps scheduled
  int64_t iteration_tokens_total = 0;      // tokens over resolved steps
};

class Scheduler {
 public:
  // CHECK-fails on a config ValidateSchedulerConfig rejects.
  Scheduler(const SchedulerConfig& config, int32_t num_blocks, int32_t block_size);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request. INVALID_ARGUMENT (empty prompt, prompt too long for
  // max_model_len), ALREADY_EXISTS (live seq_id), RESOURCE_EXHAUSTED (waiting
  // queue full).
  [[nodiscard]] absl::Status Add(SchedulerRequest request);

  // Marks a sequence cancelled; the next Schedule() removes it, frees its
  // blocks and reports it in `finished` (kCancelled). NOT_FOUND if unknown.
  [[nodiscard]] absl::Status Cancel(uint64_t seq_id);

  // Builds the next step. At most one earlier non-empty step may be unresolved.
  ScheduledStep Schedule(absl::Time now);

  // Makes `step` ready to send: fills kPendingToken slots from resolved
  // results, drops sequences that finished after it was built and attaches
  // frees/finishes recorded since. FAILED_PRECONDITION if a pending token's
  // step is still unresolved.
  [[nodiscard]] absl::Status FinalizeStep(ScheduledStep* step);

  // Resolves the oldest unresolved step: `sampled` holds one token per
  // sample == true sequence of the sent step, in order. Appends the tokens,
  // marks the step's KV computed (feeding the prefix cache). Tokens for
  // sequences removed meanwhile are ignored. INVALID_ARGUMENT on a mismatch.
  [[nodiscard]] absl::Status OnStepResult(uint64_t step_id,
                                          absl::Span<const SampledTokenId> sampled);

  // The router ends a sequence (stop, max_tokens, error); frees its blocks now
  // and tells the workers with the next step. NOT_FOUND if unknown.
  absl::StatusOr<FinishedSequence> Finish(uint64_t seq_id, FinishReason reason);

  bool Contains(uint64_t seq_id) const;
  int64_t num_running() const;
  int64_t num_waiting() const;
  bool HasWork() const;  // any live sequence
  SchedulerMetrics metrics() const;
  // Unsynchronized view for tests and benchmarks; not while other threads call in.
  const BlockManager& block_manager() const;

  // Cross-checks sequence state against the block manager; for tests.
  absl::Status CheckInvariants() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_SCHEDULER_SCHEDULER_H_
