#include "router/api/serving_loop.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/check.h"
#include "common/status.h"
#include "proto/convert/sampling_convert.h"

namespace tpserve {

struct ServingLoop::Live {
  GenerateJob job;
  IncrementalDetokenizer detok;
  StopStringMatcher matcher;
  absl::flat_hash_set<int32_t> stop_tokens;
  std::vector<int32_t> output;  // tokens streamed so far (resume re-prefills them)
  bool scheduled = false;       // has been part of a sent step
  absl::Time last_token;

  int32_t generated() const { return static_cast<int32_t>(output.size()); }

  Live(GenerateJob j, const Tokenizer* tokenizer)
      : job(std::move(j)), detok(tokenizer, /*skip_special=*/true), matcher(job.stop) {
    stop_tokens.insert(job.stop_token_ids.begin(), job.stop_token_ids.end());
  }
};

// A step on its way through the workers.
struct ServingLoop::InFlight {
  ScheduledStep step;
  absl::Time sent;
  absl::Notification done;
  absl::StatusOr<v1::StepResponse> result;
};

namespace {

v1::StepRequest ToProto(const ScheduledStep& step, std::vector<uint64_t>* extra_frees) {
  v1::StepRequest request;
  request.set_step_id(step.step_id);
  for (const ScheduledSequence& s : step.seqs) {
    v1::SequenceInput* in = request.add_seqs();
    in->set_seq_id(s.seq_id);
    in->mutable_tokens()->Add(s.tokens.begin(), s.tokens.end());
    in->set_start_pos(s.start_pos);
    in->set_prompt_len(s.prompt_len);
    in->mutable_block_table()->Add(s.block_table.begin(), s.block_table.end());
    in->set_sample(s.sample);
    SamplingToWorker(s.sampling, in->mutable_sampling());
  }
  for (uint64_t id : *extra_frees) request.add_free_seq_ids(id);
  extra_frees->clear();
  for (uint64_t id : step.free_seq_ids) request.add_free_seq_ids(id);
  return request;
}

const char* MetricReason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    default:
      return "abort";
  }
}

}  // namespace

ServingLoop::ServingLoop(Options options, StepExecutor* executor, const Tokenizer* tokenizer,
                         RouterMetrics* metrics)
    : options_(std::move(options)),
      executor_(executor),
      tokenizer_(tokenizer),
      metrics_(metrics),
      eos_ids_(options_.eos_ids.begin(), options_.eos_ids.end()) {
  ResetScheduler();
}

ServingLoop::~ServingLoop() { Stop(); }

void ServingLoop::ResetScheduler() {
  scheduler_ =
      std::make_unique<Scheduler>(options_.scheduler, options_.num_blocks, options_.block_size);
}

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
  wake_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

uint64_t ServingLoop::Submit(GenerateJob job) {
  const uint64_t id = next_seq_id_.fetch_add(1);
  num_live_.fetch_add(1);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      num_live_.fetch_sub(1);
      job.sink->Close(absl::UnavailableError("the router is shutting down; retry elsewhere"));
      return id;
    }
    inbox_adds_.emplace_back(id, std::move(job));
  }
  wake_.Signal();
  return id;
}

void ServingLoop::Cancel(uint64_t seq_id) {
  {
    absl::MutexLock lock(&mu_);
    inbox_cancels_.push_back(seq_id);
  }
  wake_.Signal();
}

void ServingLoop::DrainInbox() {
  std::vector<std::pair<uint64_t, GenerateJob>> adds;
  std::vector<uint64_t> cancels;
  {
    absl::MutexLock lock(&mu_);
    adds.swap(inbox_adds_);
    cancels.swap(inbox_cancels_);
  }
  for (auto& [id, job] : adds) {
    SchedulerRequest request;
    request.seq_id = id;
    request.prompt = job.prompt;
    request.sampling = job.sampling;
    request.priority = job.priority;
    request.deadline = job.deadline;
    absl::Status s = scheduler_->Add(std::move(request));
    if (!s.ok()) {
      metrics_->rejected_requests->Increment();
      if (s.code() == absl::StatusCode::kResourceExhausted) {
        s = absl::ResourceExhaustedError(
            absl::StrCat("the router's waiting queue is full (", options_.scheduler.max_waiting,
                         " requests); retry with backoff or add capacity (", s.message(), ")"));
      }
      job.sink->Close(s);
      num_live_.fetch_sub(1);
      continue;
    }
    metrics_->prompt_tokens->Increment(static_cast<double>(job.prompt.size()));
    live_.emplace(id, std::make_unique<Live>(std::move(job), tokenizer_));
  }
  for (uint64_t id : cancels) {
    if (!live_.contains(id)) continue;
    if (epoch_ == 0) {  // no group serves: no Schedule() will sweep it
      (void)scheduler_->Finish(id, FinishReason::kCancelled);
      CloseLive(id, absl::CancelledError("request cancelled by the client"));
      continue;
    }
    // The scheduler removes it (and frees its blocks) at the next Schedule and
    // reports it in `finished`.
    if (!scheduler_->Cancel(id).ok()) CloseLive(id, absl::CancelledError("request cancelled"));
  }
}

void ServingLoop::Run() {
  while (true) {
    last_tick_ns_ = absl::ToUnixNanos(absl::Now());
    bool idle;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      idle = in_flight_ == nullptr && !scheduler_->HasWork() && inbox_adds_.empty() &&
             inbox_cancels_.empty();
      if (idle && pending_frees_.empty()) {
        wake_.WaitWithTimeout(&mu_, absl::Milliseconds(100));
        continue;
      }
    }
    if (idle) {
      // pending_frees_ is the loop thread's own; the RPC runs unlocked.
      std::vector<uint64_t> frees;
      frees.swap(pending_frees_);
      absl::Status s = executor_->Free(frees);
      (void)s;  // a failing worker shows up on the next step
      continue;
    }
    DrainInbox();

    const uint64_t serving = executor_->ServingEpoch();
    if (serving != epoch_) {
      // The group changed: finish the step of the old epoch (its tokens are
      // valid if it succeeded), then every sequence starts over.
      if (in_flight_ != nullptr) {
        in_flight_->done.WaitForNotification();
        std::unique_ptr<InFlight> done = std::move(in_flight_);
        if (done->result.ok()) {
          absl::Status s = ProcessResult(done->step, *done->result);
          (void)s;  // the scheduler is replaced below either way
        }
      }
      if (epoch_ != 0) Requeue();
      if (serving == 0 && epoch_ != 0) down_since_ = absl::Now();
      epoch_ = serving;
    }
    if (epoch_ == 0) {
      WhileDown(absl::Now());
      absl::MutexLock lock(&mu_);
      wake_.WaitWithTimeout(&mu_, absl::Milliseconds(20));
      continue;
    }

    // Build the next step; with a step in flight this overlaps its execution.
    ScheduledStep next = scheduler_->Schedule(absl::Now());
    if (in_flight_ != nullptr) {
      in_flight_->done.WaitForNotification();
      std::unique_ptr<InFlight> done = std::move(in_flight_);
      const absl::Duration round_trip = absl::Now() - done->sent;
      if (!done->result.ok()) {
        // The epoch ended with this step (the executor noticed first).
        Requeue();
        epoch_ = 0;
        down_since_ = absl::Now();
        continue;
      }
      metrics_->step_round_trip->Observe(absl::ToDoubleSeconds(round_trip));
      metrics_->step_overhead->Observe(
          std::max(0.0, absl::ToDoubleSeconds(round_trip) - done->result->engine_seconds()));
      absl::Status s = ProcessResult(done->step, *done->result);
      if (!s.ok()) {
        FailAll(Annotate(s, "processing a step result"));
        continue;
      }
    }
    absl::Status s = scheduler_->FinalizeStep(&next);
    if (!s.ok()) {
      FailAll(Annotate(s, "finalizing a step"));
      continue;
    }
    HandleSchedulerFinished(next.finished);
    metrics_->ObserveScheduler(scheduler_->metrics());
    if (next.empty()) {
      pending_frees_.insert(pending_frees_.end(), next.free_seq_ids.begin(),
                            next.free_seq_ids.end());
      if (scheduler_->HasWork()) {
        // Work that cannot run yet (e.g. no free blocks): wait for a change.
        absl::MutexLock lock(&mu_);
        wake_.WaitWithTimeout(&mu_, absl::Milliseconds(5));
      }
      continue;
    }
    SendStep(std::move(next));
  }
  // Shutting down: wait for the step in flight, then end every stream.
  if (in_flight_ != nullptr) in_flight_->done.WaitForNotification();
  in_flight_.reset();
  DrainInbox();
  FailAll(absl::UnavailableError("the router is shutting down; retry elsewhere"));
}

void ServingLoop::SendStep(ScheduledStep step) {
  const absl::Time now = absl::Now();
  for (const ScheduledSequence& s : step.seqs) {
    auto it = live_.find(s.seq_id);
    if (it == live_.end() || it->second->scheduled) continue;
    it->second->scheduled = true;
    metrics_->request_queue_time->Observe(absl::ToDoubleSeconds(now - it->second->job.arrival));
  }
  metrics_->iteration_tokens->Observe(step.num_tokens);
  auto flight = std::make_unique<InFlight>();
  v1::StepRequest request = ToProto(step, &pending_frees_);
  flight->step = std::move(step);
  flight->sent = now;
  InFlight* raw = flight.get();
  in_flight_ = std::move(flight);
  executor_->StepAsync(std::move(request), [raw](absl::StatusOr<v1::StepResponse> r) {
    raw->result = std::move(r);
    raw->done.Notify();
  });
}

absl::Status ServingLoop::ProcessResult(const ScheduledStep& step,
                                        const v1::StepResponse& response) {
  std::vector<SampledTokenId> sampled;
  sampled.reserve(response.tokens_size());
  for (const v1::SampledToken& t : response.tokens()) {
    sampled.push_back({.seq_id = t.seq_id(), .token = t.token()});
  }
  TPS_RETURN_IF_ERROR(scheduler_->OnStepResult(step.step_id, sampled));
  const absl::Time now = absl::Now();
  for (const v1::SampledToken& t : response.tokens()) {
    auto it = live_.find(t.seq_id());
    if (it == live_.end() || !scheduler_->Contains(t.seq_id())) continue;
    Live& live = *it->second;
    const int32_t token = t.token();
    metrics_->generation_tokens->Increment();
    if (live.output.empty()) {
      metrics_->time_to_first_token->Observe(absl::ToDoubleSeconds(now - live.job.arrival));
    } else {
      metrics_->inter_token_latency->Observe(absl::ToDoubleSeconds(now - live.last_token));
    }
    live.last_token = now;
    live.output.push_back(token);

    v1::GenerateResponse out;
    out.set_request_id(live.job.request_id);
    out.add_token_ids(token);
    if (live.job.sampling.logprobs || live.job.sampling.top_logprobs > 0) {
      v1::SampledLogprobs* lp = out.add_logprobs();
      auto fill = [this](v1::TokenLogprob* dst, int32_t id, float logprob) {
        dst->set_token_id(id);
        dst->set_logprob(logprob);
        if (id >= 0 && id < tokenizer_->vocab_size()) {
          dst->set_text(tokenizer_->Decode({id}).value_or(""));
        }
      };
      fill(lp->mutable_sampled(), token, t.logprob());
      for (const v1::TokenLogprobEntry& e : t.top_logprobs()) {
        fill(lp->add_top(), e.token(), e.logprob());
      }
    }

    const bool is_eos = !live.job.ignore_eos && eos_ids_.contains(token);
    if (is_eos || live.stop_tokens.contains(token)) {
      std::string tail = live.detok.Finish();
      out.mutable_text()->append(live.matcher.Append(tail).text);
      out.mutable_text()->append(live.matcher.Flush());
      // The token's text ("\n" for token 198), or its piece when it decodes
      // to nothing (special tokens such as <|im_end|>).
      std::string reason = std::to_string(token);
      if (token >= 0 && token < tokenizer_->vocab_size()) {
        reason = tokenizer_->Decode({token}).value_or("");
        if (reason.empty()) reason = tokenizer_->TokenText(token);
      }
      FinishLive(t.seq_id(), FinishReason::kStop, std::move(out), reason);
      continue;
    }
    absl::StatusOr<std::string> delta = live.detok.Add(token);
    if (!delta.ok()) {
      CloseLive(t.seq_id(), absl::InternalError(absl::StrCat("worker returned token ", token, ": ",
                                                             delta.status().message())));
      absl::StatusOr<FinishedSequence> f = scheduler_->Finish(t.seq_id(), FinishReason::kAborted);
      (void)f;
      continue;
    }
    StopStringMatcher::Result m = live.matcher.Append(*delta);
    out.mutable_text()->append(m.text);
    if (m.stopped) {
      FinishLive(t.seq_id(), FinishReason::kStop, std::move(out), m.matched);
      continue;
    }
    if (live.generated() >= live.job.max_tokens) {
      StopStringMatcher::Result tail = live.matcher.Append(live.detok.Finish());
      out.mutable_text()->append(tail.text);
      if (tail.stopped) {
        FinishLive(t.seq_id(), FinishReason::kStop, std::move(out), tail.matched);
      } else {
        out.mutable_text()->append(live.matcher.Flush());
        FinishLive(t.seq_id(), FinishReason::kLength, std::move(out), "");
      }
      continue;
    }
    live.job.sink->Send(std::move(out));
  }
  return absl::OkStatus();
}

void ServingLoop::FinishLive(uint64_t seq_id, FinishReason reason, v1::GenerateResponse last,
                             const std::string& stop_reason) {
  auto it = live_.find(seq_id);
  if (it == live_.end()) return;
  Live& live = *it->second;
  int32_t cached = 0;
  if (scheduler_->Contains(seq_id)) {
    absl::StatusOr<FinishedSequence> f = scheduler_->Finish(seq_id, reason);
    if (f.ok()) cached = f->cached_tokens;
  }
  last.set_request_id(live.job.request_id);
  last.set_finish_reason(reason == FinishReason::kLength ? v1::FINISH_REASON_LENGTH
                                                         : v1::FINISH_REASON_STOP);
  last.set_stop_reason(stop_reason);
  v1::Usage* usage = last.mutable_usage();
  usage->set_prompt_tokens(static_cast<int32_t>(live.job.prompt.size()));
  usage->set_completion_tokens(live.generated());
  usage->set_cached_tokens(cached);
  metrics_->e2e_request_latency->Observe(absl::ToDoubleSeconds(absl::Now() - live.job.arrival));
  metrics_->CountFinished(MetricReason(reason));
  std::shared_ptr<ResponseSink> sink = std::move(live.job.sink);
  live_.erase(it);
  num_live_.fetch_sub(1);
  sink->Send(std::move(last));
  sink->Close(absl::OkStatus());
}

void ServingLoop::CloseLive(uint64_t seq_id, absl::Status status) {
  auto it = live_.find(seq_id);
  if (it == live_.end()) return;
  metrics_->CountFinished("abort");
  std::shared_ptr<ResponseSink> sink = std::move(it->second->job.sink);
  live_.erase(it);
  num_live_.fetch_sub(1);
  sink->Close(std::move(status));
}

void ServingLoop::HandleSchedulerFinished(const std::vector<FinishedSequence>& finished) {
  for (const FinishedSequence& f : finished) {
    auto it = live_.find(f.seq_id);
    if (it == live_.end()) continue;
    switch (f.reason) {
      case FinishReason::kCancelled:
        CloseLive(f.seq_id, absl::CancelledError("request cancelled by the client"));
        break;
      case FinishReason::kDeadline:
        CloseDeadline(f.seq_id);
        break;
      case FinishReason::kLength:
        FinishLength(f.seq_id);
        break;
      default:
        CloseLive(f.seq_id, absl::UnavailableError(absl::StrCat("the router aborted the request (",
                                                                FinishReasonName(f.reason), ")")));
        break;
    }
  }
}

void ServingLoop::FinishLength(uint64_t seq_id) {
  auto it = live_.find(seq_id);
  if (it == live_.end()) return;
  Live& live = *it->second;
  v1::GenerateResponse last;
  StopStringMatcher::Result tail = live.matcher.Append(live.detok.Finish());
  last.set_text(tail.text + live.matcher.Flush());
  FinishLive(seq_id, FinishReason::kLength, std::move(last), "");
}

void ServingLoop::CloseDeadline(uint64_t seq_id) {
  auto it = live_.find(seq_id);
  if (it == live_.end()) return;
  CloseLive(seq_id, absl::DeadlineExceededError(absl::StrCat(
                        "the request's deadline passed after ", it->second->generated(),
                        " generated tokens; raise the deadline or lower max_tokens")));
}

void ServingLoop::Requeue() {
  in_flight_.reset();
  pending_frees_.clear();
  ResetScheduler();
  std::vector<uint64_t> ids;
  for (const auto& [id, live] : live_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());  // ids grow with arrival: keep FIFO order
  for (uint64_t id : ids) {
    Live& live = *live_.at(id);
    SchedulerRequest request;
    request.seq_id = id;
    request.prompt = live.job.prompt;
    request.prompt.insert(request.prompt.end(), live.output.begin(), live.output.end());
    request.prompt_len = static_cast<int32_t>(live.job.prompt.size());
    request.sampling = live.job.sampling;
    request.priority = live.job.priority;
    request.deadline = live.job.deadline;
    absl::Status s = scheduler_->Add(std::move(request));
    if (!s.ok()) {
      FinishLength(id);  // only a sequence already at the length limit is refused
      continue;
    }
    metrics_->requests_resumed->Increment();
  }
  metrics_->ObserveScheduler(scheduler_->metrics());
}

void ServingLoop::WhileDown(absl::Time now) {
  if (live_.empty()) return;
  const bool gave_up = now - down_since_ > options_.recovery_timeout;
  std::vector<uint64_t> ids;
  for (const auto& [id, live] : live_) {
    if (gave_up || now >= live->job.deadline) ids.push_back(id);
  }
  for (uint64_t id : ids) {
    (void)scheduler_->Finish(id, gave_up ? FinishReason::kAborted : FinishReason::kDeadline);
    if (!gave_up) {
      CloseDeadline(id);
      continue;
    }
    CloseLive(id,
              absl::UnavailableError(absl::StrCat(
                  "no worker group served for ", absl::FormatDuration(options_.recovery_timeout),
                  " (--recovery_timeout): ", executor_->DownReason())));
  }
  metrics_->ObserveScheduler(scheduler_->metrics());
}

void ServingLoop::FailAll(const absl::Status& status) {
  const absl::Status unavailable = status.ok() || status.code() == absl::StatusCode::kUnavailable
                                       ? status
                                       : absl::UnavailableError(status.message());
  std::vector<uint64_t> ids;
  for (const auto& [id, live] : live_) ids.push_back(id);
  for (uint64_t id : ids) CloseLive(id, unavailable);
  in_flight_.reset();
  pending_frees_.clear();
  ResetScheduler();
  metrics_->ObserveScheduler(scheduler_->metrics());
}

}  // namespace tpserve
