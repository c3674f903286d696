#include "router/cluster/worker_group.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/grpcpp.h"

namespace tpserve {
namespace {

std::chrono::system_clock::time_point Deadline(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoNanoseconds(d);
}

absl::Status FromGrpc(const grpc::Status& s, int rank, const std::string& address,
                      absl::string_view what) {
  return absl::UnavailableError(absl::StrCat("worker rank ", rank, " (", address, ") ", what,
                                             " failed: ", s.error_message(), " [grpc code ",
                                             static_cast<int>(s.error_code()), "]"));
}

// One in-flight fan-out: a context and response per rank.
struct StepFanout {
  v1::StepRequest request;
  std::vector<grpc::ClientContext> contexts;
  std::vector<v1::StepResponse> responses;
  std::vector<grpc::Status> statuses;
  std::atomic<int> remaining{0};
  std::atomic<bool> reported{false};  // `done` already ran (with the first error)
  WorkerGroup::StepCallback done;

  explicit StepFanout(int n) : contexts(n), responses(n), statuses(n), remaining(n) {}
};

}  // namespace

WorkerGroup::WorkerGroup(std::vector<std::string> addresses, absl::Duration step_timeout)
    : addresses_(std::move(addresses)), step_timeout_(step_timeout) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  for (const std::string& address : addresses_) {
    stubs_.push_back(v1::Worker::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
  }
}

WorkerGroup::~WorkerGroup() {
  absl::MutexLock lock(&inflight_mu_);
  inflight_mu_.Await(absl::Condition(
      +[](int* n) { return *n == 0; }, &inflight_));
}

absl::StatusOr<ClusterInfo> WorkerGroup::WaitUntilLoaded(
    absl::Duration timeout, const std::function<void(const std::string&)>& progress) {
  const absl::Time give_up = absl::Now() + timeout;
  std::vector<v1::InfoResponse> infos(stubs_.size());
  std::vector<std::string> last_note(stubs_.size());
  for (size_t r = 0; r < stubs_.size(); ++r) {
    while (true) {
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline(absl::Seconds(5)));
      ctx.set_wait_for_ready(true);
      grpc::Status s = stubs_[r]->Info(&ctx, v1::InfoRequest(), &infos[r]);
      std::string note;
      if (s.ok() && infos[r].loaded()) break;
      note = s.ok() ? absl::StrCat("rank ", r, " loading: ", infos[r].load_progress())
                    : absl::StrCat("waiting for worker rank ", r, " at ", addresses_[r], " (",
                                   s.error_message(), ")");
      if (note != last_note[r]) {
        progress(note);
        last_note[r] = note;
      }
      if (absl::Now() > give_up) {
        return absl::UnavailableError(absl::StrCat(
            "worker rank ", r, " at ", addresses_[r], " did not finish loading within ",
            absl::FormatDuration(timeout), "; last state: ", note));
      }
      absl::SleepFor(absl::Milliseconds(200));
    }
  }
  ClusterInfo info;
  info.rank0 = infos[0];
  info.world_size = world_size();
  info.kv_num_blocks = infos[0].kv_num_blocks();
  info.kv_block_size = infos[0].kv_block_size();
  for (size_t r = 0; r < infos.size(); ++r) {
    const v1::InfoResponse& i = infos[r];
    if (i.rank() != static_cast<int>(r) || i.world_size() != world_size()) {
      return absl::FailedPreconditionError(
          absl::StrCat("worker at ", addresses_[r], " reports rank ", i.rank(), " of ",
                       i.world_size(), " but the router lists it as rank ", r, " of ", world_size(),
                       "; start the workers with matching --rank/--world_size"));
    }
    if (i.model_name() != infos[0].model_name() || i.vocab_size() != infos[0].vocab_size() ||
        i.kv_block_size() != infos[0].kv_block_size()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker rank ", r, " serves model '", i.model_name(), "' (block size ", i.kv_block_size(),
          ") but rank 0 serves '", infos[0].model_name(), "' (block size ",
          infos[0].kv_block_size(), "); all ranks must load the same model"));
    }
    info.kv_num_blocks = std::min(info.kv_num_blocks, i.kv_num_blocks());
  }
  return info;
}

void WorkerGroup::StepAsync(v1::StepRequest request, StepCallback done) {
  const int n = world_size();
  auto* fan = new StepFanout(n);
  fan->request = std::move(request);
  fan->done = std::move(done);
  {
    absl::MutexLock lock(&inflight_mu_);
    ++inflight_;
  }
  for (int r = 0; r < n; ++r) {
    fan->contexts[r].set_deadline(Deadline(step_timeout_));
    stubs_[r]->async()->Step(
        &fan->contexts[r], &fan->request, &fan->responses[r], [this, fan, r](grpc::Status s) {
          // The first failing rank fails the step at once: a dead rank must
          // not wait for its peers' collective timeout to be reported.
          if (!s.ok() && !fan->reported.exchange(true)) {
            fan->done(FromGrpc(s, r, addresses_[r], absl::StrCat("step ", fan->request.step_id())));
          }
          if (fan->remaining.fetch_sub(1) != 1) return;
          std::unique_ptr<StepFanout> owned(fan);
          if (!owned->reported.exchange(true)) {
            double slowest = 0;
            for (const v1::StepResponse& resp : owned->responses) {
              slowest = std::max(slowest, resp.engine_seconds());
            }
            v1::StepResponse result = std::move(owned->responses[0]);
            result.set_engine_seconds(slowest);
            owned->done(std::move(result));
          }
          owned.reset();
          absl::MutexLock lock(&inflight_mu_);
          --inflight_;
        });
  }
}

absl::StatusOr<v1::StepResponse> WorkerGroup::Step(const v1::StepRequest& request) {
  absl::Notification finished;
  absl::StatusOr<v1::StepResponse> result;
  StepAsync(request, [&](absl::StatusOr<v1::StepResponse> r) {
    result = std::move(r);
    finished.Notify();
  });
  finished.WaitForNotification();
  return result;
}

absl::Status WorkerGroup::Free(const std::vector<uint64_t>& seq_ids) {
  v1::FreeRequest request;
  for (uint64_t id : seq_ids) request.add_seq_ids(id);
  for (int r = 0; r < world_size(); ++r) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(absl::Seconds(10)));
    v1::FreeResponse response;
    grpc::Status s = stubs_[r]->Free(&ctx, request, &response);
    if (!s.ok()) return FromGrpc(s, r, addresses_[r], "Free");
  }
  return absl::OkStatus();
}

absl::Status WorkerGroup::CheckHealth(absl::Duration timeout) {
  for (int r = 0; r < world_size(); ++r) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(timeout));
    v1::HealthResponse response;
    grpc::Status s = stubs_[r]->Health(&ctx, v1::HealthRequest(), &response);
    if (!s.ok()) return FromGrpc(s, r, addresses_[r], "Health");
  }
  return absl::OkStatus();
}

}  // namespace tpserve
