#include "router/api/serving_loop.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "common/status.h"
#include "proto/convert/sampling_convert.h"
#include "router/api/placement.h"
#include "router/api/serving_loop_state.h"
#include "router/kv/block_manager.h"

namespace tpserve {
namespace {

// `sent` (null: lean steps off) is what the ranks hold per sequence: a
// sequence they hold whose blocks only grew is sent as a delta.
v1::StepRequest ToProto(const ScheduledStep& step, std::vector<uint64_t>* extra_frees,
                        absl::flat_hash_map<uint64_t, std::vector<int32_t>>* sent) {
  v1::StepRequest request;
  request.set_step_id(step.step_id);
  // Frees apply before the step's sequences, on the ranks as here.
  for (uint64_t id : *extra_frees) request.add_free_seq_ids(id);
  extra_frees->clear();
  for (uint64_t id : step.free_seq_ids) request.add_free_seq_ids(id);
  if (sent != nullptr) {
    for (uint64_t id : request.free_seq_ids()) sent->erase(id);
  }
  for (const ScheduledSequence& s : step.seqs) {
    v1::SequenceInput* in = request.add_seqs();
    in->set_seq_id(s.seq_id);
    in->mutable_tokens()->Add(s.tokens.begin(), s.tokens.end());
    in->set_start_pos(s.start_pos);
    in->set_sample(s.sample);
    if (sent != nullptr) {
      auto it = sent->find(s.seq_id);
      if (it != sent->end() && it->second.size() <= s.block_table.size() &&
          std::equal(it->second.begin(), it->second.end(), s.block_table.begin())) {
        in->set_delta(true);
        in->mutable_block_table()->Add(s.block_table.begin() + it->second.size(),
                                       s.block_table.end());
        it->second.insert(it->second.end(), s.block_table.begin() + it->second.size(),
                          s.block_table.end());
        continue;
      }
      (*sent)[s.seq_id] = s.block_table;
    }
    in->set_prompt_len(s.prompt_len);
    in->mutable_block_table()->Add(s.block_table.begin(), s.block_table.end());
    SamplingToWorker(s.sampling, in->mutable_sampling());
  }
  return request;
}

std::unique_ptr<Scheduler> NewScheduler(const ServingLoop::Options& options) {
  return std::make_unique<Scheduler>(options.scheduler, options.num_blocks, options.block_size);
}

// How often the loop refreshes Snapshot() while busy.
constexpr absl::Duration kSnapshotInterval = absl::Milliseconds(50);

}  // namespace

ServingLoop::ServingLoop(Options options, std::vector<StepExecutor*> executors,
                         const Tokenizer* tokenizer, RouterMetrics* metrics)
    : options_(std::move(options)),
      tokenizer_(tokenizer),
      metrics_(metrics),
      eos_ids_(options_.eos_ids.begin(), options_.eos_ids.end()) {
  TPS_CHECK(!executors.empty());
  for (size_t i = 0; i < executors.size(); ++i) {
    auto lane = std::make_unique<Lane>();
    lane->index = static_cast<int>(i);
    lane->executor = executors[i];
    lane->scheduler = NewScheduler(options_);
    lanes_.push_back(std::move(lane));
  }
  PublishSnapshot();
}

ServingLoop::~ServingLoop() { Stop(); }

void ServingLoop::Start() {
  TPS_CHECK(!thread_.joinable());
  thread_ = std::thread([this] { Run(); });
}

void ServingLoop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

uint64_t ServingLoop::Submit(GenerateJob job) {
  const uint64_t id = next_seq_id_.fetch_add(1);
  num_live_.fetch_add(1);
  absl::MutexLock lock(&mu_);
  if (stopping_) {
    num_live_.fetch_sub(1);
    job.sink->Close(absl::UnavailableError("the router is shutting down; retry elsewhere"));
    return id;
  }
  inbox_adds_.emplace_back(id, std::move(job));
  return id;
}

void ServingLoop::Cancel(uint64_t seq_id) {
  absl::MutexLock lock(&mu_);
  inbox_cancels_.push_back(seq_id);
}

void ServingLoop::SetDrained(int group, bool drained) {
  TPS_CHECK(group >= 0 && group < num_groups());
  absl::MutexLock lock(&mu_);
  inbox_drains_.emplace_back(group, drained);
  snapshot_[group].drained = drained;  // visible at once; the loop applies it next turn
}

std::vector<ServingLoop::GroupSnapshot> ServingLoop::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return snapshot_;
}

void ServingLoop::PublishSnapshot() {
  std::vector<GroupSnapshot> snapshot;
  for (const auto& lane : lanes_) {
    GroupSnapshot g;
    g.group = lane->index;
    g.epoch = lane->epoch;
    g.drained = lane->drained;
    g.live = static_cast<int64_t>(lane->seqs.size());
    g.scheduler = lane->scheduler->metrics();
    g.load = GroupLoad(g.scheduler.num_running, g.scheduler.num_waiting,
                       g.scheduler.num_waiting_tokens, options_.scheduler.max_num_batched_tokens,
                       g.scheduler.kv_cache_usage_ratio, options_.scheduler.max_num_seqs);
    g.placed_total = lane->placed_total;
    snapshot.push_back(g);
  }
  absl::MutexLock lock(&mu_);
  // A drain requested since the last turn stays visible until applied.
  for (const auto& [group, drained] : inbox_drains_) snapshot[group].drained = drained;
  snapshot_ = std::move(snapshot);
}

Scheduler* ServingLoop::SchedulerOf(uint64_t seq_id) {
  auto it = live_.find(seq_id);
  if (it == live_.end() || it->second->lane < 0) return nullptr;
  return lanes_[it->second->lane]->scheduler.get();
}

void ServingLoop::DrainInbox() {
  std::vector<std::pair<uint64_t, GenerateJob>> adds;
  std::vector<uint64_t> cancels;
  std::vector<std::pair<int, bool>> drains;
  {
    absl::MutexLock lock(&mu_);
    adds.swap(inbox_adds_);
    cancels.swap(inbox_cancels_);
    drains.swap(inbox_drains_);
  }
  for (const auto& [group, drained] : drains) lanes_[group]->drained = drained;
  for (auto& [id, job] : adds) {
    // Requests wait here only while no group serves (placed the same turn
    // otherwise); the queue bound applies to that wait too.
    if (static_cast<int32_t>(unplaced_.size()) >= options_.scheduler.max_waiting) {
      metrics_->rejected_requests->Increment();
      job.sink->Close(absl::ResourceExhaustedError(absl::StrCat(
          "the router's waiting queue is full (", options_.scheduler.max_waiting,
          " requests wait for a serving worker group); retry with backoff or add capacity")));
      num_live_.fetch_sub(1);
      continue;
    }
    live_.emplace(id, std::make_unique<Live>(std::move(job), tokenizer_));
    unplaced_.push_back(id);
  }
  for (uint64_t id : cancels) {
    auto it = live_.find(id);
    if (it == live_.end()) continue;
    Scheduler* scheduler = SchedulerOf(id);
    // The scheduler removes a placed one (and frees its blocks) at the next
    // Schedule and reports it in `finished`; an unplaced one ends now.
    if (scheduler == nullptr || !scheduler->Cancel(id).ok()) {
      CloseLive(id, absl::CancelledError("request cancelled by the client"));
    }
  }
}

int ServingLoop::ChooseLane(const std::vector<int32_t>& prompt) const {
  std::vector<GroupCandidate> candidates;
  for (const auto& lane : lanes_) {
    if (lane->epoch == 0 || lane->drained) continue;
    const SchedulerMetrics m = lane->scheduler->metrics();
    GroupCandidate c;
    c.group = lane->index;
    if (options_.scheduler.enable_prefix_cache) {
      c.cached_tokens = lane->scheduler->block_manager().FindCachedPrefix(prompt).num_tokens;
    }
    c.load = GroupLoad(m.num_running, m.num_waiting, m.num_waiting_tokens,
                       options_.scheduler.max_num_batched_tokens, m.kv_cache_usage_ratio,
                       options_.scheduler.max_num_seqs);
    candidates.push_back(c);
  }
  return ChooseGroup(candidates, options_.placement_load_slack);
}

void ServingLoop::PlaceWaiting() {
  std::vector<uint64_t> still;
  std::vector<uint64_t> ids;
  ids.swap(unplaced_);
  for (uint64_t id : ids) {
    auto it = live_.find(id);
    if (it == live_.end()) continue;  // closed while waiting
    Live& live = *it->second;
    const int g = ChooseLane(live.job.prompt);
    if (g < 0) {
      still.push_back(id);
      continue;
    }
    Lane& lane = *lanes_[g];
    SchedulerRequest request;
    request.seq_id = id;
    request.prompt = live.job.prompt;
    if (live.resumed) {
      request.prompt.insert(request.prompt.end(), live.output.begin(), live.output.end());
      request.prompt_len = static_cast<int32_t>(live.job.prompt.size());
    }
    request.sampling = live.job.sampling;
    request.priority = live.job.priority;
    request.deadline = live.job.deadline;
    absl::Status s = lane.scheduler->Add(std::move(request));
    if (!s.ok()) {
      if (live.resumed) {
        FinishLength(id);  // only a sequence already at the length limit is refused
        continue;
      }
      metrics_->rejected_requests->Increment();
      if (s.code() == absl::StatusCode::kResourceExhausted) {
        s = absl::ResourceExhaustedError(
            absl::StrCat("the router's waiting queue is full (", options_.scheduler.max_waiting,
                         " requests", lanes_.size() > 1 ? absl::StrCat(" in worker group ", g) : "",
                         "); retry with backoff or add capacity (", s.message(), ")"));
      }
      std::shared_ptr<ResponseSink> sink = std::move(live.job.sink);
      live_.erase(it);
      num_live_.fetch_sub(1);
      sink->Close(s);
      continue;
    }
    if (live.resumed) {
      metrics_->requests_resumed->Increment();
    } else {
      metrics_->prompt_tokens->Increment(static_cast<double>(live.job.prompt.size()));
    }
    live.lane = g;
    lane.seqs.insert(id);
    ++lane.placed_total;
    metrics_->CountPlaced(g);
  }
  unplaced_ = std::move(still);
}

void ServingLoop::Run() {
  absl::Time last_snapshot = absl::InfinitePast();
  while (true) {
    last_tick_ns_ = absl::ToUnixNanos(absl::Now());
    uint64_t seen_completions;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      seen_completions = completions_;
    }
    DrainInbox();
    absl::Time now = absl::Now();
    bool progressed = false;
    bool any_serving = false;
    for (auto& lane : lanes_) {
      progressed |= FollowEpoch(*lane);
      any_serving |= lane->epoch != 0;
    }
    if (any_serving != any_serving_) {
      any_serving_ = any_serving;
      if (!any_serving) none_serving_since_ = now;
    }
    if (!unplaced_.empty()) {
      PlaceWaiting();
      WhileUnplaced(now);
    }
    bool blocked = false;  // work that cannot run yet (e.g. no free blocks)
    for (auto& lane : lanes_) {
      if (lane->epoch == 0) continue;
      if (Advance(*lane, now)) {
        progressed = true;
      } else if (lane->in_flight == nullptr && lane->scheduler->HasWork()) {
        blocked = true;
      }
    }
    now = absl::Now();
    if (progressed && now - last_snapshot < kSnapshotInterval) continue;
    PublishSnapshot();
    last_snapshot = now;
    if (progressed) continue;
    const absl::Duration wait = !unplaced_.empty() ? absl::Milliseconds(20)
                                : blocked          ? absl::Milliseconds(5)
                                                   : absl::Milliseconds(100);
    absl::MutexLock lock(&mu_);
    auto woken = [this, seen_completions]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || !inbox_adds_.empty() || !inbox_cancels_.empty() ||
             !inbox_drains_.empty() || completions_ != seen_completions;
    };
    mu_.AwaitWithTimeout(absl::Condition(&woken), wait);
  }
  // Shutting down: every step callback (abandoned ones too) references this
  // loop; wait for them, then end every stream.
  {
    absl::MutexLock lock(&mu_);
    auto quiet = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return outstanding_ == 0; };
    mu_.Await(absl::Condition(&quiet));
  }
  DrainInbox();
  FailAll(absl::UnavailableError("the router is shutting down; retry elsewhere"));
}

bool ServingLoop::FollowEpoch(Lane& lane) {
  const uint64_t serving = lane.executor->ServingEpoch();
  if (serving == lane.epoch) return false;
  // The group changed: its workers forgot every sequence (a step of the old
  // epoch still in flight is abandoned; its tokens were never streamed).
  if (lane.epoch != 0) ResetLane(lane);
  lane.epoch = serving;
  return true;
}

void ServingLoop::ResetLane(Lane& lane) {
  lane.in_flight.reset();
  lane.next.reset();
  lane.pending_frees.clear();
  lane.sent_blocks.clear();
  lane.scheduler = NewScheduler(options_);
  for (uint64_t id : lane.seqs) {
    Live& live = *live_.at(id);
    live.lane = -1;
    live.resumed = true;
    unplaced_.push_back(id);
  }
  lane.seqs.clear();
  std::sort(unplaced_.begin(), unplaced_.end());  // ids grow with arrival: keep FIFO order
  metrics_->ObserveScheduler(lane.index, lane.scheduler->metrics());
}

bool ServingLoop::Advance(Lane& lane, absl::Time now) {
  if (lane.in_flight == nullptr && !lane.next.has_value() && lane.pending_frees.empty() &&
      !lane.scheduler->HasWork()) {
    return false;  // idle
  }
  bool did = false;
  if (lane.in_flight != nullptr) {
    if (!lane.in_flight->done.load(std::memory_order_acquire)) {
      if (lane.next.has_value()) return false;
      // Build the next step while this one runs.
      lane.next = lane.scheduler->Schedule(now);
      return true;
    }
    std::shared_ptr<InFlight> done = std::move(lane.in_flight);
    if (!done->result.ok()) {
      // The epoch ended with this step (the executor noticed first).
      ResetLane(lane);
      lane.epoch = 0;
      return true;
    }
    const absl::Duration round_trip = absl::Now() - done->sent;
    metrics_->step_round_trip->Observe(absl::ToDoubleSeconds(round_trip));
    metrics_->step_overhead->Observe(
        std::max(0.0, absl::ToDoubleSeconds(round_trip) - done->result->engine_seconds()));
    absl::Status s = ProcessResult(lane, done->step, *done->result);
    if (!s.ok()) {
      FailAll(Annotate(s, "processing a step result"));
      return true;
    }
    did = true;
  }
  ScheduledStep next =
      lane.next.has_value() ? *std::move(lane.next) : lane.scheduler->Schedule(now);
  lane.next.reset();
  absl::Status s = lane.scheduler->FinalizeStep(&next);
  if (!s.ok()) {
    FailAll(Annotate(s, "finalizing a step"));
    return true;
  }
  HandleSchedulerFinished(next.finished);
  metrics_->ObserveScheduler(lane.index, lane.scheduler->metrics());
  if (next.empty()) {
    lane.pending_frees.insert(lane.pending_frees.end(), next.free_seq_ids.begin(),
                              next.free_seq_ids.end());
    if (!lane.scheduler->HasWork() && !lane.pending_frees.empty()) {
      std::vector<uint64_t> frees;
      frees.swap(lane.pending_frees);
      for (uint64_t id : frees) lane.sent_blocks.erase(id);
      absl::Status freed = lane.executor->Free(frees);
      (void)freed;  // a failing worker shows up on the next step
    }
    return did;
  }
  SendStep(lane, std::move(next));
  return true;
}

void ServingLoop::SendStep(Lane& lane, ScheduledStep step) {
  const absl::Time now = absl::Now();
  for (const ScheduledSequence& s : step.seqs) {
    auto it = live_.find(s.seq_id);
    if (it == live_.end() || it->second->scheduled) continue;
    it->second->scheduled = true;
    metrics_->request_queue_time->Observe(absl::ToDoubleSeconds(now - it->second->job.arrival));
  }
  metrics_->iteration_tokens->Observe(step.num_tokens);
  auto flight = std::make_shared<InFlight>();
  v1::StepRequest request =
      ToProto(step, &lane.pending_frees, options_.lean_steps ? &lane.sent_blocks : nullptr);
  flight->step = std::move(step);
  flight->sent = now;
  lane.in_flight = flight;
  {
    absl::MutexLock lock(&mu_);
    ++outstanding_;
  }
  lane.executor->StepAsync(std::move(request), [this, flight](absl::StatusOr<v1::StepResponse> r) {
    flight->result = std::move(r);
    flight->done.store(true, std::memory_order_release);
    absl::MutexLock lock(&mu_);
    ++completions_;
    --outstanding_;
  });
}

std::string ServingLoop::DownReason() const {
  if (lanes_.size() == 1) return lanes_[0]->executor->DownReason();
  std::vector<std::string> reasons;
  for (const auto& lane : lanes_) {
    const std::string why = lane->executor->DownReason();
    if (!why.empty()) reasons.push_back(absl::StrCat("group ", lane->index, ": ", why));
  }
  return absl::StrJoin(reasons, "; ");
}

void ServingLoop::WhileUnplaced(absl::Time now) {
  const bool gave_up = !any_serving_ && now - none_serving_since_ > options_.recovery_timeout;
  std::vector<uint64_t> ids = unplaced_;
  for (uint64_t id : ids) {
    auto it = live_.find(id);
    if (it == live_.end()) continue;
    if (gave_up) {
      CloseLive(id,
                absl::UnavailableError(absl::StrCat("no worker group served for ",
                                                    absl::FormatDuration(options_.recovery_timeout),
                                                    " (--recovery_timeout): ", DownReason())));
    } else if (now >= it->second->job.deadline) {
      CloseDeadline(id);
    }
  }
}

void ServingLoop::FailAll(const absl::Status& status) {
  const absl::Status unavailable = status.ok() || status.code() == absl::StatusCode::kUnavailable
                                       ? status
                                       : absl::UnavailableError(status.message());
  std::vector<uint64_t> ids;
  for (const auto& [id, live] : live_) ids.push_back(id);
  for (uint64_t id : ids) CloseLive(id, unavailable);
  unplaced_.clear();
  for (auto& lane : lanes_) {
    lane->in_flight.reset();
    lane->next.reset();
    lane->pending_frees.clear();
    lane->sent_blocks.clear();
    lane->seqs.clear();
    lane->scheduler = NewScheduler(options_);
    metrics_->ObserveScheduler(lane->index, lane->scheduler->metrics());
  }
}

}  // namespace tpserve
