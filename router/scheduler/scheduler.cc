#include "router/scheduler/scheduler.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <set>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "common/status.h"
#include "router/kv/block_manager.h"
#include "router/scheduler/sequence.h"
#include "router/scheduler/step_latency.h"

namespace tpserve {

absl::Status ValidateSchedulerConfig(const SchedulerConfig& config, int32_t num_blocks,
                                     int32_t block_size) {
  if (num_blocks <= 0) return absl::InvalidArgumentError("num_blocks must be > 0");
  if (block_size <= 0) return absl::InvalidArgumentError("block_size must be > 0");
  if (static_cast<int64_t>(num_blocks) * block_size > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError("num_blocks * block_size overflows 32-bit token positions");
  }
  if (config.max_num_batched_tokens <= 0) {
    return absl::InvalidArgumentError("max_num_batched_tokens must be > 0");
  }
  if (config.max_num_seqs <= 0) return absl::InvalidArgumentError("max_num_seqs must be > 0");
  if (config.max_waiting < 0) return absl::InvalidArgumentError("max_waiting must be >= 0");
  if (config.max_model_len < 0) return absl::InvalidArgumentError("max_model_len must be >= 0");
  if (config.admission_watermark_blocks < 0 || config.admission_watermark_blocks >= num_blocks) {
    return absl::InvalidArgumentError("admission_watermark_blocks must be in [0, num_blocks)");
  }
  return absl::OkStatus();
}

namespace {

using scheduler_internal::RankLess;
using scheduler_internal::SeqState;
using scheduler_internal::Sequence;

// A single-token slice of generated output that samples; the rest is prefill
// (prompt chunks and recompute after preemption).
bool IsDecode(const ScheduledSequence& slice) {
  return slice.tokens.size() == 1 && slice.sample && slice.start_pos >= slice.prompt_len;
}

struct StepRecord {
  struct Slice {
    uint64_t seq_id;
    uint64_t epoch;
    int32_t end_pos;  // start_pos + tokens.size()
    bool sample;
  };
  uint64_t step_id = 0;
  std::vector<Slice> slices;
  int32_t num_tokens = 0;
  absl::Time sent = absl::InfinitePast();  // FinalizeStep: the step leaves for the workers
};

}  // namespace

struct Scheduler::State {
  State(const SchedulerConfig& c, int32_t num_blocks, int32_t block_size)
      : config(Resolve(c, num_blocks * block_size)),
        blocks(num_blocks, block_size, c.enable_prefix_cache) {}

  static SchedulerConfig Resolve(SchedulerConfig c, int32_t capacity) {
    if (c.max_model_len == 0 || c.max_model_len > capacity) c.max_model_len = capacity;
    return c;
  }

  // Public Scheduler methods hold `mu` for their whole body (why it exists
  // although the serving loop calls from one thread: scheduler.h).
  mutable absl::Mutex mu;
  const SchedulerConfig config;  // max_model_len resolved
  BlockManager blocks ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<uint64_t, std::unique_ptr<Sequence>> seqs ABSL_GUARDED_BY(mu);
  std::set<Sequence*, RankLess> waiting ABSL_GUARDED_BY(mu);
  std::set<Sequence*, RankLess> running ABSL_GUARDED_BY(mu);
  std::deque<StepRecord> unresolved ABSL_GUARDED_BY(mu);  // sent (or about to be), oldest first
  std::vector<uint64_t> pending_free ABSL_GUARDED_BY(mu);
  std::vector<FinishedSequence> pending_finished ABSL_GUARDED_BY(mu);
  uint64_t next_step_id ABSL_GUARDED_BY(mu) = 1;
  uint64_t next_arrival ABSL_GUARDED_BY(mu) = 0;
  uint64_t next_epoch ABSL_GUARDED_BY(mu) = 1;
  int64_t num_preemptions ABSL_GUARDED_BY(mu) = 0;
  int64_t num_steps ABSL_GUARDED_BY(mu) = 0;
  int64_t iteration_tokens ABSL_GUARDED_BY(mu) = 0;
  PrefillRate prefill_rate ABSL_GUARDED_BY(mu);  // of resolved steps (target_step_latency)

  // Per-Schedule() scratch.
  struct Build {
    ScheduledStep* step = nullptr;
    int32_t budget = 0;
    int32_t slots = 0;
    absl::flat_hash_map<uint64_t, size_t> slice_of;  // seq id -> index in step->seqs
    std::vector<bool> dropped;
  };

  FinishedSequence Remove(Sequence* seq, FinishReason reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void Preempt(Sequence* seq, Build& build) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  bool EnsureBlocksForRunning(Sequence* seq, int32_t num_tokens, Build& build)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void Emit(Sequence* seq, int32_t n, Build& build) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void Unemit(Sequence* seq, Build& build) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void SweepFinished(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void AdmitWaiting(Build& build) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void CapPrefillWhileDecoding(int32_t decodes, Build& build) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

void Scheduler::State::CapPrefillWhileDecoding(int32_t decodes, Build& build) {
  if (config.target_step_latency <= absl::ZeroDuration()) return;
  const double rate = config.prefill_tokens_per_second > 0 ? config.prefill_tokens_per_second
                                                           : prefill_rate.tokens_per_second();
  if (rate <= 0) return;  // nothing measured yet
  build.budget =
      std::min(build.budget, PrefillTokensWhileDecoding(config.target_step_latency, rate, decodes));
}

FinishedSequence Scheduler::State::Remove(Sequence* seq, FinishReason reason) {
  FinishedSequence done;
  done.seq_id = seq->id;
  done.reason = reason;
  done.prompt_len = seq->prompt_len;
  done.num_generated = static_cast<int32_t>(seq->tokens.size()) - seq->prompt_len;
  done.cached_tokens = std::max(seq->cached_tokens, 0);
  done.num_preemptions = seq->num_preemptions;
  blocks.Free(seq->id);
  (seq->running() ? running : waiting).erase(seq);
  if (seq->on_workers) pending_free.push_back(seq->id);
  seqs.erase(seq->id);  // destroys *seq
  return done;
}

void Scheduler::State::SweepFinished(absl::Time now) {
  std::vector<std::pair<Sequence*, FinishReason>> doomed;
  for (const auto& [id, seq] : seqs) {
    if (seq->cancel_requested) {
      doomed.emplace_back(seq.get(), FinishReason::kCancelled);
    } else if (now >= seq->deadline) {
      doomed.emplace_back(seq.get(), FinishReason::kDeadline);
    } else if (seq->num_pending == 0 && seq->total_len() >= config.max_model_len) {
      // No room for another token. (With a token pending, wait for it so the
      // client receives it first.)
      doomed.emplace_back(seq.get(), FinishReason::kLength);
    }
  }
  // Hash-map order varies between processes; arrival order keeps runs reproducible.
  std::sort(doomed.begin(), doomed.end(),
            [](const auto& a, const auto& b) { return a.first->arrival < b.first->arrival; });
  for (auto [seq, reason] : doomed) pending_finished.push_back(Remove(seq, reason));
}

void Scheduler::State::Emit(Sequence* seq, int32_t n, Build& build) {
  ScheduledStep& step = *build.step;
  ScheduledSequence& out = step.seqs.emplace_back();
  out.seq_id = seq->id;
  out.start_pos = seq->num_computed;
  out.prompt_len = seq->prompt_len;
  out.sampling = seq->sampling;
  const int32_t known = static_cast<int32_t>(seq->tokens.size());
  const int32_t end = seq->num_computed + n;
  const int32_t from_known = std::max(0, std::min(end, known) - seq->num_computed);
  out.tokens.assign(seq->tokens.begin() + seq->num_computed,
                    seq->tokens.begin() + seq->num_computed + from_known);
  // Positions past the known tokens hold the token the step in flight samples.
  out.tokens.resize(n, kPendingToken);
  step.num_pending_tokens += n - from_known;
  out.sample = end == seq->total_len();
  if (!IsDecode(out)) step.num_prefill_tokens += n;
  seq->num_computed = end;
  if (out.sample) ++seq->num_pending;
  seq->on_workers = true;
  build.budget -= n;
  --build.slots;
  build.slice_of[seq->id] = step.seqs.size() - 1;
  build.dropped.push_back(false);
}

void Scheduler::State::Unemit(Sequence* seq, Build& build) {
  auto it = build.slice_of.find(seq->id);
  if (it == build.slice_of.end()) return;
  const size_t index = it->second;
  build.slice_of.erase(it);
  ScheduledSequence& slice = build.step->seqs[index];
  const int32_t n = static_cast<int32_t>(slice.tokens.size());
  for (int32_t t : slice.tokens) build.step->num_pending_tokens -= t == kPendingToken;
  if (!IsDecode(slice)) build.step->num_prefill_tokens -= n;
  if (slice.sample) --seq->num_pending;
  seq->num_computed -= n;
  build.budget += n;
  ++build.slots;
  build.dropped[index] = true;
}

void Scheduler::State::Preempt(Sequence* seq, Build& build) {
  Unemit(seq, build);
  blocks.Free(seq->id);
  running.erase(seq);
  seq->state = SeqState::kWaiting;
  seq->num_computed = 0;
  seq->num_committed = 0;
  seq->preempted_in_step = build.step->step_id;
  ++seq->num_preemptions;
  ++num_preemptions;
  waiting.insert(seq);
  if (seq->on_workers) {
    pending_free.push_back(seq->id);
    seq->on_workers = false;
  }
}

// Frees blocks for a running sequence by preempting lower-ranked running ones;
// false if `seq` itself had to be preempted.
bool Scheduler::State::EnsureBlocksForRunning(Sequence* seq, int32_t num_tokens, Build& build) {
  while (!blocks.CanAllocate(seq->id, num_tokens)) {
    Sequence* victim = *running.rbegin();
    Preempt(victim, build);
    if (victim == seq) return false;
  }
  absl::Status s = blocks.Allocate(seq->id, num_tokens);
  TPS_CHECK(s.ok()) << s;
  return true;
}

void Scheduler::State::AdmitWaiting(Build& build) {
  const int32_t max_seqs = config.max_num_seqs;
  for (auto it = waiting.begin(); it != waiting.end();) {
    if (build.budget <= 0 || build.slots <= 0 || static_cast<int32_t>(running.size()) >= max_seqs) {
      return;
    }
    Sequence* seq = *it;
    // Not yet: its last token is still in flight, or it was just preempted.
    if (seq->num_pending > 0 || seq->preempted_in_step == build.step->step_id) {
      ++it;
      continue;
    }
    PrefixMatch prefix = blocks.FindCachedPrefix(seq->tokens);
    const int32_t remaining = seq->total_len() - prefix.num_tokens;
    const int32_t n = std::min(remaining, build.budget);
    const int32_t end = prefix.num_tokens + n;
    // The watermark keeps room for running sequences to grow; with none
    // running it would only block a long prompt forever.
    auto fits = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      const int32_t reserve = running.empty() ? 0 : config.admission_watermark_blocks;
      return blocks.NumAvailableBlocks() - blocks.NumBlocksToTake(seq->id, end, &prefix) >= reserve;
    };
    // A waiting request may preempt only strictly lower-priority running ones,
    // and only when that could make room (their blocks bound what it frees).
    if (!fits()) {
      int32_t reclaimable = 0;
      for (auto v = running.rbegin(); v != running.rend() && (*v)->priority < seq->priority; ++v) {
        reclaimable += static_cast<int32_t>(blocks.BlockTable((*v)->id).size());
      }
      const int32_t reserve = config.admission_watermark_blocks;
      if (blocks.NumAvailableBlocks() + reclaimable -
              blocks.NumBlocksToTake(seq->id, end, &prefix) >=
          reserve) {
        while (!fits() && !running.empty() && (*running.rbegin())->priority < seq->priority) {
          Preempt(*running.rbegin(), build);
        }
      }
    }
    absl::Status s =
        fits() ? blocks.Allocate(seq->id, end, &prefix) : absl::ResourceExhaustedError("no room");
    if (!s.ok()) {
      // Head of line: lower-ranked requests wait too, so priority and FIFO hold.
      return;
    }
    it = waiting.erase(it);
    seq->state = SeqState::kRunning;
    seq->epoch = next_epoch++;
    seq->num_computed = prefix.num_tokens;
    seq->num_committed = prefix.num_tokens;
    if (seq->cached_tokens < 0) seq->cached_tokens = prefix.num_tokens;
    running.insert(seq);
    Emit(seq, n, build);
  }
}

Scheduler::Scheduler(const SchedulerConfig& config, int32_t num_blocks, int32_t block_size) {
  absl::Status s = ValidateSchedulerConfig(config, num_blocks, block_size);
  TPS_CHECK(s.ok()) << s;
  state_ = std::make_unique<State>(config, num_blocks, block_size);
}

Scheduler::~Scheduler() = default;

absl::Status Scheduler::Add(SchedulerRequest request) {
  State& st = *state_;
  absl::MutexLock lock(&st.mu);
  if (request.prompt.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("request ", request.seq_id, " has an empty prompt"));
  }
  if (static_cast<int64_t>(request.prompt.size()) >= st.config.max_model_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt of ", request.prompt.size(),
                     " tokens leaves no room to generate: at most ", st.config.max_model_len - 1,
                     " prompt tokens fit (max_model_len ", st.config.max_model_len, ")"));
  }
  if (st.seqs.contains(request.seq_id)) {
    return absl::AlreadyExistsError(absl::StrCat("sequence ", request.seq_id, " is already live"));
  }
  const bool resume = request.prompt_len >= 0;
  if (resume && (request.prompt_len < 1 ||
                 request.prompt_len > static_cast<int32_t>(request.prompt.size()))) {
    return absl::InvalidArgumentError(absl::StrCat("request ", request.seq_id,
                                                   " resumes with prompt_len ", request.prompt_len,
                                                   " of ", request.prompt.size(), " tokens"));
  }
  if (!resume && static_cast<int32_t>(st.waiting.size()) >= st.config.max_waiting) {
    return absl::ResourceExhaustedError(absl::StrCat("server busy: ", st.waiting.size(),
                                                     " requests already waiting (limit ",
                                                     st.config.max_waiting, "); retry later"));
  }
  auto seq = std::make_unique<Sequence>();
  seq->id = request.seq_id;
  seq->priority = request.priority;
  seq->arrival = st.next_arrival++;
  seq->prompt_len = resume ? request.prompt_len : static_cast<int32_t>(request.prompt.size());
  seq->tokens = std::move(request.prompt);
  seq->deadline = request.deadline;
  seq->sampling = request.sampling;
  st.waiting.insert(seq.get());
  st.seqs.emplace(seq->id, std::move(seq));
  return absl::OkStatus();
}

absl::Status Scheduler::Cancel(uint64_t seq_id) {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->seqs.find(seq_id);
  if (it == state_->seqs.end()) {
    return absl::NotFoundError(absl::StrCat("sequence ", seq_id, " is not live"));
  }
  it->second->cancel_requested = true;
  return absl::OkStatus();
}

ScheduledStep Scheduler::Schedule(absl::Time now) {
  State& st = *state_;
  absl::MutexLock lock(&st.mu);
  TPS_CHECK_LE(st.unresolved.size(), 1u)
      << "Schedule() with two unresolved steps; call OnStepResult first";
  ScheduledStep step;
  step.step_id = st.next_step_id++;
  State::Build build;
  build.step = &step;
  build.budget = st.config.max_num_batched_tokens;
  build.slots = st.config.max_num_seqs;

  st.SweepFinished(now);

  // Decode first, then continuing prefills, both in rank order. Iterate over
  // a snapshot: preemption edits `running`.
  std::vector<Sequence*> ranked(st.running.begin(), st.running.end());
  for (int pass = 0; pass < 2; ++pass) {
    const int32_t decodes = static_cast<int32_t>(step.seqs.size());
    if (pass == 1 && decodes > 0) st.CapPrefillWhileDecoding(decodes, build);
    for (Sequence* seq : ranked) {
      if (build.budget <= 0 || build.slots <= 0) break;
      if (!seq->running() || build.slice_of.contains(seq->id)) continue;
      const int32_t remaining = seq->total_len() - seq->num_computed;
      if ((pass == 0) != (remaining == 1) || remaining <= 0) continue;
      if (seq->total_len() >= st.config.max_model_len) continue;  // finishes once resolved
      const int32_t n = std::min(remaining, build.budget);
      if (!st.EnsureBlocksForRunning(seq, seq->num_computed + n, build)) continue;
      st.Emit(seq, n, build);
    }
  }
  st.AdmitWaiting(build);

  // Compact slices of sequences preempted after being scheduled; attach block
  // tables now that they are final.
  std::vector<ScheduledSequence> kept;
  kept.reserve(step.seqs.size());
  StepRecord record;
  record.step_id = step.step_id;
  for (size_t i = 0; i < step.seqs.size(); ++i) {
    if (build.dropped[i]) continue;
    ScheduledSequence& slice = step.seqs[i];
    absl::Span<const int32_t> table = st.blocks.BlockTable(slice.seq_id);
    slice.block_table.assign(table.begin(), table.end());
    step.num_tokens += static_cast<int32_t>(slice.tokens.size());
    record.slices.push_back({slice.seq_id, st.seqs.at(slice.seq_id)->epoch,
                             slice.start_pos + static_cast<int32_t>(slice.tokens.size()),
                             slice.sample});
    kept.push_back(std::move(slice));
  }
  step.seqs = std::move(kept);
  step.free_seq_ids = std::move(st.pending_free);
  st.pending_free.clear();
  step.finished = std::move(st.pending_finished);
  st.pending_finished.clear();
  if (!step.seqs.empty()) {
    record.num_tokens = step.num_tokens;
    st.unresolved.push_back(std::move(record));
    ++st.num_steps;
  }
  return step;
}

absl::Status Scheduler::FinalizeStep(ScheduledStep* step) {
  State& st = *state_;
  absl::MutexLock lock(&st.mu);
  StepRecord* record = nullptr;
  for (StepRecord& r : st.unresolved) {
    if (r.step_id == step->step_id) record = &r;
  }
  if (record == nullptr && !step->seqs.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("step ", step->step_id, " is not awaiting results"));
  }
  auto live = [&](const ScheduledSequence& slice, const StepRecord::Slice& rec)
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(st.mu) -> const Sequence* {
    auto it = st.seqs.find(slice.seq_id);
    if (it == st.seqs.end() || it->second->epoch != rec.epoch || !it->second->running()) {
      return nullptr;  // finished (or preempted) since Schedule(): already in a free list
    }
    return it->second.get();
  };
  if (record != nullptr && (step->num_pending_tokens > 0 || !st.pending_free.empty())) {
    // Check first so that a failed call leaves `step` untouched.
    for (size_t i = 0; i < step->seqs.size(); ++i) {
      const ScheduledSequence& slice = step->seqs[i];
      const Sequence* seq = live(slice, record->slices[i]);
      if (seq == nullptr) continue;
      const size_t last = slice.start_pos + slice.tokens.size();
      if (slice.tokens.back() == kPendingToken && last > seq->tokens.size()) {
        return absl::FailedPreconditionError(
            absl::StrCat("step ", step->step_id, ": token ", last - 1, " of sequence ", seq->id,
                         " is not known yet; call OnStepResult for the previous step first"));
      }
    }
    std::vector<ScheduledSequence> kept;
    std::vector<StepRecord::Slice> kept_slices;
    step->num_tokens = 0;
    step->num_prefill_tokens = 0;
    step->num_pending_tokens = 0;
    for (size_t i = 0; i < step->seqs.size(); ++i) {
      ScheduledSequence& slice = step->seqs[i];
      const Sequence* seq = live(slice, record->slices[i]);
      if (seq == nullptr) continue;
      for (size_t k = 0; k < slice.tokens.size(); ++k) {
        if (slice.tokens[k] == kPendingToken) slice.tokens[k] = seq->tokens[slice.start_pos + k];
      }
      step->num_tokens += static_cast<int32_t>(slice.tokens.size());
      if (!IsDecode(slice)) step->num_prefill_tokens += static_cast<int32_t>(slice.tokens.size());
      kept_slices.push_back(record->slices[i]);
      kept.push_back(std::move(slice));
    }
    step->seqs = std::move(kept);
    record->slices = std::move(kept_slices);
    record->num_tokens = step->num_tokens;
    if (step->seqs.empty()) {  // nothing left to run: no result to wait for
      const uint64_t id = step->step_id;
      std::erase_if(st.unresolved, [id](const StepRecord& r) { return r.step_id == id; });
      --st.num_steps;
    }
  }
  step->free_seq_ids.insert(step->free_seq_ids.end(), st.pending_free.begin(),
                            st.pending_free.end());
  st.pending_free.clear();
  step->finished.insert(step->finished.end(), st.pending_finished.begin(),
                        st.pending_finished.end());
  st.pending_finished.clear();
  if (record != nullptr) record->sent = absl::Now();
  return absl::OkStatus();
}

absl::Status Scheduler::OnStepResult(uint64_t step_id, absl::Span<const SampledTokenId> sampled) {
  State& st = *state_;
  absl::MutexLock lock(&st.mu);
  if (st.unresolved.empty() || st.unresolved.front().step_id != step_id) {
    bool later = false;
    for (const StepRecord& r : st.unresolved) later |= r.step_id == step_id;
    if (!later && sampled.empty() && step_id < st.next_step_id) {
      return absl::OkStatus();  // an empty step: nothing to resolve
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "result for step ", step_id, " out of order (",
        st.unresolved.empty() ? std::string("none") : absl::StrCat(st.unresolved.front().step_id),
        " is the oldest unresolved)"));
  }
  const StepRecord& record = st.unresolved.front();
  size_t expected = 0;
  for (const StepRecord::Slice& slice : record.slices) {
    if (!slice.sample) continue;
    if (expected >= sampled.size() || sampled[expected].seq_id != slice.seq_id) {
      return absl::InvalidArgumentError(absl::StrCat("step ", step_id,
                                                     " result: expected a token for sequence ",
                                                     slice.seq_id, " at index ", expected));
    }
    if (sampled[expected].token < 0) {
      return absl::InvalidArgumentError(absl::StrCat("step ", step_id, " result: token ",
                                                     sampled[expected].token, " for sequence ",
                                                     slice.seq_id, " is not a token id"));
    }
    ++expected;
  }
  if (expected != sampled.size()) {
    return absl::InvalidArgumentError(absl::StrCat("step ", step_id, " result has ", sampled.size(),
                                                   " tokens, expected ", expected));
  }
  size_t next = 0;
  for (const StepRecord::Slice& slice : record.slices) {
    const SampledTokenId* token = slice.sample ? &sampled[next++] : nullptr;
    auto it = st.seqs.find(slice.seq_id);
    if (it == st.seqs.end() || it->second->epoch != slice.epoch) continue;  // gone
    Sequence& seq = *it->second;
    if (token != nullptr) {
      TPS_CHECK_GT(seq.num_pending, 0);
      seq.tokens.push_back(token->token);
      --seq.num_pending;
    }
    // A sequence preempted while this step ran keeps the sampled token (its
    // KV was valid) but recomputes everything, so nothing is committed.
    if (seq.running()) {
      seq.num_committed = std::max(seq.num_committed, slice.end_pos);
      st.blocks.CacheComputedBlocks(seq.id, seq.tokens, seq.num_committed);
    }
  }
  st.iteration_tokens += record.num_tokens;
  if (record.sent != absl::InfinitePast()) {
    st.prefill_rate.Observe(record.num_tokens, absl::ToDoubleSeconds(absl::Now() - record.sent));
  }
  st.unresolved.pop_front();
  return absl::OkStatus();
}

absl::StatusOr<FinishedSequence> Scheduler::Finish(uint64_t seq_id, FinishReason reason) {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->seqs.find(seq_id);
  if (it == state_->seqs.end()) {
    return absl::NotFoundError(absl::StrCat("sequence ", seq_id, " is not live"));
  }
  return state_->Remove(it->second.get(), reason);
}

bool Scheduler::Contains(uint64_t seq_id) const {
  absl::MutexLock lock(&state_->mu);
  return state_->seqs.contains(seq_id);
}

int64_t Scheduler::num_running() const {
  absl::MutexLock lock(&state_->mu);
  return state_->running.size();
}

int64_t Scheduler::num_waiting() const {
  absl::MutexLock lock(&state_->mu);
  return state_->waiting.size();
}

bool Scheduler::HasWork() const {
  absl::MutexLock lock(&state_->mu);
  return !state_->seqs.empty();
}

const BlockManager& Scheduler::block_manager() const { return state_->blocks; }

SchedulerMetrics Scheduler::metrics() const {
  const State& st = *state_;
  absl::MutexLock lock(&st.mu);
  const BlockManagerStats bs = st.blocks.stats();
  SchedulerMetrics m;
  m.num_running = st.running.size();
  m.num_waiting = st.waiting.size();
  for (const Sequence* seq : st.waiting) m.num_waiting_tokens += seq->total_len();
  m.kv_cache_usage_ratio = st.blocks.UsageRatio();
  m.num_preemptions_total = st.num_preemptions;
  m.prefix_cache_queries_total = bs.prefix_queries_tokens;
  m.prefix_cache_hits_total = bs.prefix_hits_tokens;
  m.num_steps_total = st.num_steps;
  m.iteration_tokens_total = st.iteration_tokens;
  return m;
}

absl::Status Scheduler::CheckInvariants() const {
  const State& st = *state_;
  absl::MutexLock lock(&st.mu);
  TPS_RETURN_IF_ERROR(st.blocks.CheckInvariants());
  if (st.running.size() + st.waiting.size() != st.seqs.size()) {
    return absl::InternalError("a live sequence is neither running nor waiting");
  }
  if (static_cast<int32_t>(st.running.size()) > st.config.max_num_seqs) {
    return absl::InternalError("more running sequences than max_num_seqs");
  }
  for (const auto& [id, seq] : st.seqs) {
    const int32_t have = static_cast<int32_t>(st.blocks.BlockTable(id).size());
    if (seq->running()) {
      if (!st.running.contains(seq.get())) return absl::InternalError("running set mismatch");
      if (have < st.blocks.BlocksFor(seq->num_computed)) {
        return absl::InternalError(absl::StrCat("sequence ", id, " has too few blocks"));
      }
      if (seq->num_committed > seq->num_computed || seq->num_computed > seq->total_len()) {
        return absl::InternalError(absl::StrCat("sequence ", id, " token counters out of order"));
      }
    } else {
      if (!st.waiting.contains(seq.get())) return absl::InternalError("waiting set mismatch");
      if (st.blocks.HasSequence(id)) {
        return absl::InternalError(absl::StrCat("waiting sequence ", id, " holds blocks"));
      }
    }
    if (seq->num_pending < 0 || seq->num_pending > 2) {
      return absl::InternalError(
          absl::StrCat("sequence ", id, " pending count ", seq->num_pending));
    }
  }
  return absl::OkStatus();
}

}  // namespace tpserve
