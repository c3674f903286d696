// ServingLoop's output side: sampled tokens become streamed text, and
// finished, cancelled or expired requests close their streams (usage,
// finish reason, metrics). The loop itself is in serving_loop.cc.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "router/api/serving_loop.h"
#include "router/api/serving_loop_state.h"

namespace tpserve {
namespace {

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

absl::Status ServingLoop::ProcessResult(Lane& lane, const ScheduledStep& step,
                                        const v1::StepResponse& response) {
  Scheduler* const scheduler = lane.scheduler.get();
  std::vector<SampledTokenId> sampled;
  sampled.reserve(response.tokens_size());
  for (const v1::SampledToken& t : response.tokens()) {
    sampled.push_back({.seq_id = t.seq_id(), .token = t.token()});
  }
  TPS_RETURN_IF_ERROR(scheduler->OnStepResult(step.step_id, sampled));
  const absl::Time now = absl::Now();
  for (const v1::SampledToken& t : response.tokens()) {
    auto it = live_.find(t.seq_id());
    if (it == live_.end() || !scheduler->Contains(t.seq_id())) continue;
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
      absl::StatusOr<FinishedSequence> f = scheduler->Finish(t.seq_id(), FinishReason::kAborted);
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
  Scheduler* scheduler = SchedulerOf(seq_id);
  if (scheduler != nullptr && scheduler->Contains(seq_id)) {
    absl::StatusOr<FinishedSequence> f = scheduler->Finish(seq_id, reason);
    if (f.ok()) cached = f->cached_tokens;
  }
  if (live.lane >= 0) lanes_[live.lane]->seqs.erase(seq_id);
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
  if (it->second->lane >= 0) lanes_[it->second->lane]->seqs.erase(seq_id);
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

}  // namespace tpserve
