// Internal to ServingLoop (serving_loop.cc, serving_loop_stream.cc): the
// state of one request, one step in flight and one worker group ("lane").
//
//   Lane& lane = *lanes_[live.lane];
//   lane.scheduler->Finish(id, FinishReason::kStop);
#ifndef TPSERVE_ROUTER_API_SERVING_LOOP_STATE_H_
#define TPSERVE_ROUTER_API_SERVING_LOOP_STATE_H_

#include <atomic>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "router/api/serving_loop.h"

namespace tpserve {

struct ServingLoop::Live {
  GenerateJob job;
  IncrementalDetokenizer detok;
  StopStringMatcher matcher;
  absl::flat_hash_set<int32_t> stop_tokens;
  std::vector<int32_t> output;  // tokens streamed so far (resume re-prefills them)
  bool scheduled = false;       // has been part of a sent step
  bool resumed = false;         // its group failed once: the next placement resumes it
  int lane = -1;                // group it runs on; -1 while unplaced
  absl::Time last_token;

  int32_t generated() const { return static_cast<int32_t>(output.size()); }

  Live(GenerateJob j, const Tokenizer* tokenizer)
      : job(std::move(j)), detok(tokenizer, /*skip_special=*/true), matcher(job.stop) {
    stop_tokens.insert(job.stop_token_ids.begin(), job.stop_token_ids.end());
  }
};

// A step on its way through a group's workers. Shared with the executor's
// callback, so a step abandoned by a failed epoch may still answer safely.
struct ServingLoop::InFlight {
  ScheduledStep step;
  absl::Time sent;
  std::atomic<bool> done{false};
  absl::StatusOr<v1::StepResponse> result;  // written before `done`
};

struct ServingLoop::Lane {
  int index = 0;
  StepExecutor* executor = nullptr;
  std::unique_ptr<Scheduler> scheduler;
  std::shared_ptr<InFlight> in_flight;
  std::optional<ScheduledStep> next;  // built while in_flight runs
  std::vector<uint64_t> pending_frees;
  // Lean steps: the block table the group's ranks hold for each sequence
  // (sent in full once per epoch, then only appended blocks).
  absl::flat_hash_map<uint64_t, std::vector<int32_t>> sent_blocks;
  absl::flat_hash_set<uint64_t> seqs;  // live requests placed here
  uint64_t epoch = 0;                  // executor epoch the scheduler belongs to
  bool drained = false;
  int64_t placed_total = 0;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_SERVING_LOOP_STATE_H_
