// GroupSupervisor: keeps one tensor-parallel group of worker ranks serving.
// It is the router's StepExecutor: steps run in the current *epoch* and carry
// it; a group life is an epoch, and the supervisor ends and re-forms epochs
// by itself (docs/operations.md "Failure handling").
//
// States: kStarting (no epoch yet) -> kServing <-> kRecovering (-> kDown once
// recovering lasts longer than recovery_timeout; it keeps trying).
// Forming an epoch (from kStarting or kRecovering), on the supervisor thread:
//   1. every rank's address: --workers, or the rendezvous store (a restarted
//      worker re-registers there, possibly at a new port);
//   2. Info on every rank: loaded, and agreeing with rank 0 (rank numbering,
//      world size, model fingerprint, block size; KV blocks >= the first
//      epoch's). A disagreement is reported at once (listener + log), naming
//      the rank and both values;
//   3. Join(epoch) on every rank (fresh communicator, sequences dropped,
//      weights kept), then a one-token warm-up step; then kServing.
// Detection while serving:
//   - heartbeat: Health on every rank every heartbeat_interval, answered
//     within heartbeat_timeout and reporting this epoch (a restarted rank
//     reports 0, a rank whose communicator broke reports 0);
//   - step deadline: step_timeout_base + step_timeout_per_token x tokens;
//   - any failed step.
// A failure ends the epoch at once (ServingEpoch() turns 0, Abort wakes the
// survivors' collectives); the supervisor then probes every rank to name the
// one that died (exited: connection refused; hung: no answer; restarted or
// fenced: wrong epoch), logs one line and counts it, and forms the next epoch
// as soon as every rank answers again.
//
//   GroupSupervisor group(options, &rendezvous);
//   group.SetListener([&](GroupState s, const std::string& why) { ... });
//   group.Start();
//   TPS_ASSIGN_OR_RETURN(ClusterInfo info, group.WaitUntilServing(absl::Minutes(10)));
//   loop = ServingLoop(..., &group, ...);
#ifndef TPSERVE_ROUTER_CLUSTER_GROUP_SUPERVISOR_H_
#define TPSERVE_ROUTER_CLUSTER_GROUP_SUPERVISOR_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router/cluster/rendezvous.h"
#include "router/cluster/step_executor.h"
#include "router/cluster/worker_group.h"

namespace tpserve {

// What the ranks agreed on when the first epoch formed.
struct ClusterInfo {
  v1::InfoResponse rank0;  // model summary as rank 0 reports it
  int world_size = 0;
  int kv_num_blocks = 0;  // minimum over ranks
  int kv_block_size = 0;
};

enum class GroupState { kStarting, kServing, kRecovering, kDown };
const char* GroupStateName(GroupState state);

struct GroupOptions {
  // Index of this group among the router's groups; its ranks register with
  // --group=<group>. (The router's `log` names the group when it has several.)
  int group = 0;
  // Epoch numbers shared by the router's groups, so no two group epochs use
  // the same rendezvous prefix; null: this supervisor counts alone.
  std::shared_ptr<std::atomic<uint64_t>> epochs;
  int world_size = 1;
  // Fixed rank addresses (--workers); empty = learn them from the rendezvous.
  std::vector<std::string> addresses;
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration heartbeat_timeout = absl::Seconds(2);
  absl::Duration join_timeout = absl::Seconds(60);
  absl::Duration step_timeout_base = absl::Seconds(15);
  absl::Duration step_timeout_per_token = absl::Milliseconds(20);
  // After this long without serving, the state reads kDown (for metrics and
  // health); the serving loop fails waiting requests then.
  absl::Duration recovery_timeout = absl::Minutes(5);
  int32_t warmup_token = 0;
  // Channel credentials for the worker ranks (null = plaintext); the router
  // passes the cluster mTLS ones (common/tls_config.h).
  std::shared_ptr<grpc::ChannelCredentials> worker_credentials;
  std::function<void(const std::string&)> log = [](const std::string&) {};
};

// Transition observer: state, and the reason (cause of a failure, the
// mismatch that blocks forming, or "epoch N serving").
using GroupListener = std::function<void(GroupState, const std::string&)>;

// Counters the supervisor keeps; the router exports them as metrics.
struct GroupEvent {
  GroupState state;
  std::string cause;             // on kRecovering: exited, hung, restarted, step_failed, ...
  double recovery_seconds = -1;  // on kServing after a recovery
  uint64_t epoch = 0;
  int group = 0;
};

class GroupSupervisor : public StepExecutor {
 public:
  // `rendezvous` may be null when options.addresses is set.
  GroupSupervisor(GroupOptions options, Rendezvous* rendezvous);
  ~GroupSupervisor() override;  // Stop()

  // Listener and event sink must be set before Start.
  void SetListener(GroupListener listener) { listener_ = std::move(listener); }
  void SetEventSink(std::function<void(const GroupEvent&)> sink) { events_ = std::move(sink); }
  void Start();
  void Stop();

  // Blocks until the first epoch serves; UNAVAILABLE after `timeout` with the
  // last reason.
  [[nodiscard]] absl::StatusOr<ClusterInfo> WaitUntilServing(absl::Duration timeout);

  GroupState state() const;
  uint64_t epoch() const;  // the latest epoch started (serving or not)

  // A group forming after the router started must offer at least this many KV
  // blocks (the block count the router's schedulers use); 0 = no floor.
  void SetMinKvBlocks(int blocks) { min_kv_blocks_.store(blocks); }
  int group() const { return options_.group; }
  int world_size() const { return options_.world_size; }

  // StepExecutor.
  void StepAsync(v1::StepRequest request, StepCallback done) override;
  [[nodiscard]] absl::Status Free(const std::vector<uint64_t>& seq_ids) override;
  uint64_t ServingEpoch() const override;
  std::string DownReason() const override;

  // Step deadline for a step of `tokens` tokens: (step_timeout_base +
  // tokens x step_timeout_per_token), doubled after every epoch (or warm-up)
  // that ended by a step deadline while every rank still answered (up to 16x).
  absl::Duration StepTimeout(int64_t tokens) const;

 private:
  // A failure as first reported: rank -1 when not known.
  struct Failure {
    int rank = -1;
    std::string cause;
    std::string detail;
  };

  void Run();
  // One attempt to form an epoch; false (with reason_ set) if not yet.
  bool TryForm();
  void Heartbeat();
  // Ends `epoch` if it is the serving one; `rank` -1 when not yet known.
  void Fail(uint64_t epoch, int rank, const std::string& cause, const std::string& detail);
  // Probes every rank to name the failed one, then EndEpoch.
  void Diagnose();
  // Doubles the step deadlines (up to kMaxStepTimeoutScale).
  void RaiseStepDeadline();
  // Aborts `epoch` on every rank, logs, counts and reports the failure.
  void EndEpoch(WorkerGroup* group, uint64_t epoch, const Failure& failure);
  static std::string EpochEndReason(const WorkerGroup* group, uint64_t epoch,
                                    const Failure& failure);
  void Transition(GroupState state, const std::string& why, GroupEvent event);
  // Retires the current WorkerGroup (kept alive until Stop: calls in flight
  // may still reference it) and creates one for `addresses`.
  WorkerGroup* GroupFor(const std::vector<std::string>& addresses);

  const GroupOptions options_;
  Rendezvous* const rendezvous_;
  GroupListener listener_;
  std::function<void(const GroupEvent&)> events_;

  mutable absl::Mutex mu_;
  GroupState state_ ABSL_GUARDED_BY(mu_) = GroupState::kStarting;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;          // latest epoch started
  uint64_t serving_epoch_ ABSL_GUARDED_BY(mu_) = 0;  // 0 unless kServing
  std::string reason_ ABSL_GUARDED_BY(mu_) = "starting: waiting for the workers";
  std::string failure_ ABSL_GUARDED_BY(mu_);  // what ended the last epoch
  // A step failure waiting for Diagnose() to name the rank.
  std::optional<Failure> undiagnosed_ ABSL_GUARDED_BY(mu_);
  absl::Time down_since_ ABSL_GUARDED_BY(mu_) = absl::Now();
  bool ever_served_ ABSL_GUARDED_BY(mu_) = false;
  ClusterInfo info_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  WorkerGroup* group_ ABSL_GUARDED_BY(mu_) = nullptr;                      // the current ranks
  std::vector<std::unique_ptr<WorkerGroup>> groups_ ABSL_GUARDED_BY(mu_);  // current + retired
  static constexpr int kMaxStepTimeoutScale = 16;
  std::atomic<int> step_timeout_scale_{1};
  std::atomic<int> min_kv_blocks_{0};
  std::thread thread_;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_CLUSTER_GROUP_SUPERVISOR_H_
