#include "router/cluster/group_supervisor.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace tpserve {
namespace {

// Status payload naming the rank a step failure came from.
constexpr char kRankPayload[] = "tpserve.rank";

int RankOf(const absl::Status& s) {
  absl::optional<absl::Cord> p = s.GetPayload(kRankPayload);
  int rank = -1;
  if (p.has_value() && absl::SimpleAtoi(std::string(*p), &rank)) return rank;
  return -1;
}

// A rank that does not answer within the deadline is hung; one whose
// connection is refused or reset has exited.
std::string UnreachableCause(const absl::Status& s) {
  return s.code() == absl::StatusCode::kDeadlineExceeded ? "hung" : "exited";
}

}  // namespace

const char* GroupStateName(GroupState state) {
  switch (state) {
    case GroupState::kStarting:
      return "starting";
    case GroupState::kServing:
      return "serving";
    case GroupState::kRecovering:
      return "recovering";
    case GroupState::kDown:
      return "down";
  }
  return "unknown";
}

GroupSupervisor::GroupSupervisor(GroupOptions options, Rendezvous* rendezvous)
    : options_(std::move(options)), rendezvous_(rendezvous) {}

GroupSupervisor::~GroupSupervisor() { Stop(); }

void GroupSupervisor::Start() {
  thread_ = std::thread([this] { Run(); });
}

void GroupSupervisor::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

GroupState GroupSupervisor::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

uint64_t GroupSupervisor::epoch() const {
  absl::MutexLock lock(&mu_);
  return epoch_;
}

uint64_t GroupSupervisor::ServingEpoch() const {
  absl::MutexLock lock(&mu_);
  return serving_epoch_;
}

std::string GroupSupervisor::DownReason() const {
  absl::MutexLock lock(&mu_);
  if (state_ == GroupState::kServing) return "";
  if (failure_.empty() || failure_ == reason_) return reason_;
  return absl::StrCat(failure_, " (now: ", reason_, ")");
}

absl::Duration GroupSupervisor::StepTimeout(int64_t tokens) const {
  return (options_.step_timeout_base + options_.step_timeout_per_token * tokens) *
         step_timeout_scale_.load();
}

absl::StatusOr<ClusterInfo> GroupSupervisor::WaitUntilServing(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return state_ == GroupState::kServing || stopping_;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout) || stopping_) {
    return absl::UnavailableError(absl::StrCat("no worker group formed within ",
                                               absl::FormatDuration(timeout), ": ", reason_));
  }
  return info_;
}

WorkerGroup* GroupSupervisor::GroupFor(const std::vector<std::string>& addresses) {
  absl::MutexLock lock(&mu_);
  if (group_ != nullptr && group_->addresses() == addresses) return group_;
  groups_.push_back(std::make_unique<WorkerGroup>(addresses, options_.worker_credentials));
  group_ = groups_.back().get();
  return group_;
}

void GroupSupervisor::Transition(GroupState state, const std::string& why, GroupEvent event) {
  {
    absl::MutexLock lock(&mu_);
    state_ = state;
    reason_ = why;
  }
  options_.log(why);
  if (listener_) listener_(state, why);
  event.state = state;
  event.group = options_.group;
  if (events_) events_(event);
}

void GroupSupervisor::Run() {
  std::string last_reason;
  auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
  auto sleep = [&](absl::Duration d) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping), d);
    return !stopping_;
  };
  while (true) {
    GroupState state;
    bool undiagnosed;
    absl::Time down_since;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      state = state_;
      undiagnosed = undiagnosed_.has_value();
      down_since = down_since_;
    }
    if (state == GroupState::kServing) {
      Heartbeat();
      if (!sleep(options_.heartbeat_interval)) return;
      continue;
    }
    if (undiagnosed) Diagnose();
    if (state == GroupState::kRecovering && absl::Now() - down_since > options_.recovery_timeout) {
      Transition(
          GroupState::kDown,
          absl::StrCat("no group served for ", absl::FormatDuration(options_.recovery_timeout),
                       " (--recovery_timeout): ", DownReason()),
          {});
    }
    if (TryForm()) continue;
    const std::string reason = DownReason();
    if (reason != last_reason) {
      options_.log(reason);
      if (listener_) listener_(this->state(), reason);
      last_reason = reason;
    }
    if (!sleep(absl::Milliseconds(250))) return;
  }
}

bool GroupSupervisor::TryForm() {
  auto not_yet = [this](std::string why) {
    absl::MutexLock lock(&mu_);
    reason_ = std::move(why);
    return false;
  };
  const int world = options_.world_size;
  std::vector<std::string> addresses = options_.addresses;
  if (addresses.empty()) {
    for (int r = 0; r < world; ++r) {
      absl::StatusOr<std::string> a = rendezvous_->Lookup(options_.group, r);
      if (!a.ok()) {
        return not_yet(absl::StrCat(
            "waiting for worker rank ", r, " of ", world,
            " to register: start it with --rendezvous=<router host>:", rendezvous_->port(),
            options_.group != 0 ? absl::StrCat(" --group=", options_.group) : "", " --rank=", r,
            " --world_size=", world));
      }
      addresses.push_back(*a);
    }
  }
  WorkerGroup* group = GroupFor(addresses);
  std::vector<absl::StatusOr<v1::InfoResponse>> infos = group->Info(absl::Seconds(2));
  for (int r = 0; r < world; ++r) {
    if (!infos[r].ok()) {
      return not_yet(absl::StrCat("waiting for worker rank ", r, " at ", addresses[r], ": ",
                                  infos[r].status().message()));
    }
  }
  const v1::InfoResponse& i0 = *infos[0];
  ClusterInfo info;
  int first_blocks;
  bool ever_served;
  {
    absl::MutexLock lock(&mu_);
    first_blocks = info_.kv_num_blocks;
    ever_served = ever_served_;
  }
  info.rank0 = i0;
  info.world_size = world;
  info.kv_num_blocks = i0.kv_num_blocks();
  info.kv_block_size = i0.kv_block_size();
  for (int r = 0; r < world; ++r) {
    const v1::InfoResponse& i = *infos[r];
    if (i.rank() != r || i.world_size() != world) {
      return not_yet(absl::StrCat("MISMATCH: the worker at ", addresses[r],
                                  " was started with --rank=", i.rank(),
                                  " --world_size=", i.world_size(), " but the router expects rank ",
                                  r, " of ", world, "; restart it with matching flags"));
    }
  }
  for (int r = 0; r < world; ++r) {
    const v1::InfoResponse& i = *infos[r];
    if (!i.loaded()) {
      return not_yet(absl::StrCat("worker rank ", r, " at ", addresses[r],
                                  " is loading: ", i.load_progress()));
    }
    if (i.model_fingerprint() != i0.model_fingerprint() ||
        i.kv_block_size() != i0.kv_block_size() || i.vocab_size() != i0.vocab_size()) {
      return not_yet(absl::StrCat("MISMATCH: worker rank ", r, " at ", addresses[r],
                                  " loaded model '", i.model_name(), "' (fingerprint ",
                                  i.model_fingerprint(), ", block size ", i.kv_block_size(),
                                  ") but rank 0 loaded '", i0.model_name(), "' (fingerprint ",
                                  i0.model_fingerprint(), ", block size ", i0.kv_block_size(),
                                  "); every rank needs the same --model and "
                                  "--block_size"));
    }
    info.kv_num_blocks = std::min(info.kv_num_blocks, i.kv_num_blocks());
  }
  if (const int floor = min_kv_blocks_.load(); floor > 0 && info.kv_num_blocks < floor) {
    return not_yet(absl::StrCat("MISMATCH: the ranks have ", info.kv_num_blocks,
                                " KV blocks but the router's groups use ", floor,
                                "; give this group's ranks at least the other groups' "
                                "--kv_cache_mb"));
  }
  if (ever_served && info.kv_num_blocks < first_blocks) {
    return not_yet(absl::StrCat("MISMATCH: the ranks now have ", info.kv_num_blocks,
                                " KV blocks but the group started with ", first_blocks,
                                "; give restarted ranks the same --kv_cache_mb"));
  }

  uint64_t epoch;
  {
    absl::MutexLock lock(&mu_);
    epoch = options_.epochs != nullptr ? options_.epochs->fetch_add(1) + 1 : epoch_ + 1;
    epoch_ = epoch;
  }
  v1::JoinRequest join;
  join.set_session(rendezvous_ != nullptr ? rendezvous_->session() : "static");
  join.set_epoch(epoch);
  join.set_world_size(world);
  join.set_model_fingerprint(i0.model_fingerprint());
  absl::Status joined = group->Join(join, options_.join_timeout);
  if (!joined.ok()) {
    group->Abort(epoch, "join failed");
    return not_yet(absl::StrCat("epoch ", epoch, " did not form: ", joined.message()));
  }
  // One token through every rank proves the epoch end to end.
  v1::StepRequest warm;
  warm.set_epoch(epoch);
  v1::SequenceInput* seq = warm.add_seqs();
  seq->add_tokens(options_.warmup_token);
  seq->set_prompt_len(1);
  seq->add_block_table(0);
  seq->set_sample(true);
  seq->mutable_sampling()->set_top_p(1.0f);
  seq->mutable_sampling()->set_repetition_penalty(1.0f);
  absl::StatusOr<v1::StepResponse> warmed = group->Step(warm, StepTimeout(1));
  if (warmed.ok() && warmed->tokens_size() != 1) {
    warmed = absl::InternalError(
        absl::StrCat("warm-up step returned ", warmed->tokens_size(), " tokens, expected 1"));
  }
  if (!warmed.ok() || !group->Free({0}).ok()) {
    if (warmed.status().code() == absl::StatusCode::kDeadlineExceeded) RaiseStepDeadline();
    group->Abort(epoch, "warm-up failed");
    return not_yet(absl::StrCat("epoch ", epoch, " warm-up step failed: ",
                                warmed.ok() ? "Free failed" : warmed.status().message()));
  }
  GroupEvent event;
  event.epoch = epoch;
  {
    absl::MutexLock lock(&mu_);
    if (ever_served_) event.recovery_seconds = absl::ToDoubleSeconds(absl::Now() - down_since_);
    if (!ever_served_) info_ = info;
    ever_served_ = true;
    serving_epoch_ = epoch;
    group_ = group;
  }
  Transition(GroupState::kServing,
             absl::StrCat("group epoch ", epoch, " SERVING: ", world, " rank(s) ",
                          absl::StrJoin(addresses, ", "),
                          event.recovery_seconds >= 0
                              ? absl::StrCat(", recovered in ",
                                             absl::StrFormat("%.2f", event.recovery_seconds), " s")
                              : ""),
             event);
  return true;
}

void GroupSupervisor::Heartbeat() {
  WorkerGroup* group;
  uint64_t epoch;
  {
    absl::MutexLock lock(&mu_);
    if (state_ != GroupState::kServing) return;
    group = group_;
    epoch = serving_epoch_;
  }
  std::vector<absl::StatusOr<v1::HealthResponse>> health =
      group->Health(options_.heartbeat_timeout);
  for (int r = 0; r < group->world_size(); ++r) {
    if (!health[r].ok()) {
      const std::string cause = UnreachableCause(health[r].status());
      Fail(epoch, r, cause,
           cause == "hung" ? absl::StrCat("no heartbeat answer within ",
                                          absl::FormatDuration(options_.heartbeat_timeout))
                           : absl::StrCat("heartbeat failed: ", health[r].status().message()));
      return;
    }
    if (health[r]->epoch() != epoch) {
      Fail(epoch, r, "left_epoch",
           health[r]->loaded() ? "it answers but is no longer in this epoch (its communicator "
                                 "failed, or it restarted)"
                               : "it restarted and is loading");
      return;
    }
  }
}

void GroupSupervisor::Fail(uint64_t epoch, int rank, const std::string& cause,
                           const std::string& detail) {
  WorkerGroup* group;
  {
    absl::MutexLock lock(&mu_);
    if (state_ != GroupState::kServing || epoch != serving_epoch_) return;
    state_ = GroupState::kRecovering;
    serving_epoch_ = 0;
    down_since_ = absl::Now();
    group = group_;
    // A step failure names the rank that reported it, which is often a
    // survivor; Diagnose() probes every rank first, then ends the epoch.
    if (cause == "step_failed" || cause == "step_timeout") {
      undiagnosed_ = Failure{rank, cause, detail};
      reason_ = absl::StrCat("group epoch ", epoch, " ended: ", detail, "; RECOVERING");
      failure_ = reason_;
      return;
    }
    // Whoever sees kRecovering sees its reason too (EndEpoch repeats it).
    reason_ = EpochEndReason(group, epoch, Failure{rank, cause, detail});
    failure_ = reason_;
  }
  EndEpoch(group, epoch, Failure{rank, cause, detail});
}

void GroupSupervisor::Diagnose() {
  WorkerGroup* group;
  uint64_t epoch;
  Failure failure;
  {
    absl::MutexLock lock(&mu_);
    group = group_;
    epoch = epoch_;
    failure = *std::move(undiagnosed_);
    undiagnosed_.reset();
  }
  std::vector<absl::StatusOr<v1::HealthResponse>> health = group->Health(absl::Seconds(1));
  for (int r = 0; r < group->world_size(); ++r) {
    if (!health[r].ok()) {
      failure = Failure{r, UnreachableCause(health[r].status()),
                        std::string(health[r].status().message())};
      break;
    }
  }
  EndEpoch(group, epoch, failure);
}

void GroupSupervisor::RaiseStepDeadline() {
  // Every rank answered but a step outlived its deadline: the hardware is
  // slower than the deadline assumes. Doubling it keeps a slow (or loaded)
  // group from failing the same step forever.
  const int scale = step_timeout_scale_.load();
  if (scale >= kMaxStepTimeoutScale) return;
  step_timeout_scale_.store(scale * 2);
  options_.log(absl::StrCat(
      "step deadlines doubled to ", absl::FormatDuration(StepTimeout(0)), " + ",
      absl::FormatDuration(options_.step_timeout_per_token * scale * 2), " per token"));
}

std::string GroupSupervisor::EpochEndReason(const WorkerGroup* group, uint64_t epoch,
                                            const Failure& failure) {
  const std::string who = failure.rank >= 0 ? absl::StrCat("rank ", failure.rank, " (",
                                                           group->addresses()[failure.rank], ")")
                                            : "a rank";
  return absl::StrCat("group epoch ", epoch, " ended: ", who, " ", failure.cause, ": ",
                      failure.detail, "; RECOVERING");
}

void GroupSupervisor::EndEpoch(WorkerGroup* group, uint64_t epoch, const Failure& failure) {
  const std::string why = EpochEndReason(group, epoch, failure);
  {
    absl::MutexLock lock(&mu_);
    failure_ = why;
  }
  if (failure.cause == "step_timeout") RaiseStepDeadline();
  group->Abort(epoch, why);
  GroupEvent event;
  event.cause = failure.cause;
  event.epoch = epoch;
  Transition(GroupState::kRecovering, why, event);
}

void GroupSupervisor::StepAsync(v1::StepRequest request, StepCallback done) {
  WorkerGroup* group = nullptr;
  uint64_t epoch = 0;
  std::string reason;
  {
    absl::MutexLock lock(&mu_);
    if (state_ == GroupState::kServing) {
      group = group_;
      epoch = serving_epoch_;
    } else {
      reason = reason_;
    }
  }
  if (group == nullptr) {
    done(absl::UnavailableError(reason));
    return;
  }
  request.set_epoch(epoch);
  int64_t tokens = 0;
  for (const v1::SequenceInput& s : request.seqs()) tokens += s.tokens_size();
  group->StepAsync(std::move(request), StepTimeout(tokens),
                   [this, epoch, done = std::move(done)](absl::StatusOr<v1::StepResponse> r) {
                     if (!r.ok()) {
                       const bool timeout =
                           r.status().code() == absl::StatusCode::kDeadlineExceeded;
                       Fail(epoch, RankOf(r.status()), timeout ? "step_timeout" : "step_failed",
                            std::string(r.status().message()));
                     }
                     done(std::move(r));
                   });
}

absl::Status GroupSupervisor::Free(const std::vector<uint64_t>& seq_ids) {
  WorkerGroup* group;
  {
    absl::MutexLock lock(&mu_);
    if (state_ != GroupState::kServing) return absl::OkStatus();  // the next epoch forgets them
    group = group_;
  }
  return group->Free(seq_ids);
}

}  // namespace tpserve
