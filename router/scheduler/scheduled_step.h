// Router-side plain data for one forward step: what the scheduler hands the
// router to send to every worker rank, and what comes back. Field for field
// the shape of worker/engine/step_types.h (the router never includes worker
// headers; both take SamplingParams from common/); router/api converts these
// to and from worker.proto.
//
//   ScheduledStep step = scheduler.Schedule(absl::Now());
//   TPS_RETURN_IF_ERROR(scheduler.FinalizeStep(&step));
//   for (const ScheduledSequence& s : step.seqs) { /* fill proto */ }
//   ... workers run it, rank 0 returns one token per `sample` sequence ...
//   TPS_RETURN_IF_ERROR(scheduler.OnStepResult(step.step_id, sampled));
#ifndef TPSERVE_ROUTER_SCHEDULER_SCHEDULED_STEP_H_
#define TPSERVE_ROUTER_SCHEDULER_SCHEDULED_STEP_H_

#include <cstdint>
#include <vector>

#include "common/sampling_params.h"

namespace tpserve {

// Placeholder in ScheduledSequence::tokens for a token that the step in
// flight has not returned yet; FinalizeStep replaces it. Never sent.
inline constexpr int32_t kPendingToken = -1;

// One sequence's slice of a step: a prefill chunk or one decode token.
struct ScheduledSequence {
  uint64_t seq_id = 0;
  std::vector<int32_t> tokens;       // new tokens, at positions start_pos...
  int32_t start_pos = 0;             // KV for [0, start_pos) is cached
  int32_t prompt_len = 0;            // positions < prompt_len are prompt
  std::vector<int32_t> block_table;  // covers [0, start_pos + tokens.size())
  bool sample = true;                // false for a prefill chunk that is not the last
  SamplingParams sampling;
};

enum class FinishReason {
  kStop,       // eos, stop token or stop string (router decides)
  kLength,     // max_tokens (router) or the KV-cache / model length limit
  kCancelled,  // client cancel or disconnect
  kDeadline,   // request deadline passed
  kAborted,    // the router gave up on it (e.g. a worker error)
};

const char* FinishReasonName(FinishReason reason);  // "stop", "length", ...

// A sequence that left the scheduler, with what the usage report needs.
struct FinishedSequence {
  uint64_t seq_id = 0;
  FinishReason reason = FinishReason::kStop;
  int32_t prompt_len = 0;
  int32_t num_generated = 0;  // tokens appended by OnStepResult
  int32_t cached_tokens = 0;  // prompt tokens served by the prefix cache (first admission)
  int32_t num_preemptions = 0;
};

struct ScheduledStep {
  uint64_t step_id = 0;  // pass back to OnStepResult; steps resolve in order
  std::vector<ScheduledSequence> seqs;
  // Sequences the workers should forget (finished, cancelled, expired or
  // preempted since the previous step); apply before running `seqs`.
  std::vector<uint64_t> free_seq_ids;
  // Sequences the scheduler itself ended (cancelled, deadline, length limit)
  // since the previous step; the router closes their streams.
  std::vector<FinishedSequence> finished;
  int32_t num_tokens = 0;          // sum of tokens over seqs (<= token budget)
  int32_t num_prefill_tokens = 0;  // of which prompt/recompute chunks
  int32_t num_pending_tokens = 0;  // kPendingToken entries left to fill

  bool empty() const { return seqs.empty(); }
};

// What rank 0 sampled for one `sample` sequence of a step.
struct SampledTokenId {
  uint64_t seq_id = 0;
  int32_t token = 0;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_SCHEDULER_SCHEDULED_STEP_H_
