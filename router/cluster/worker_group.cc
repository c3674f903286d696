#include "router/cluster/worker_group.h"

#include <atomic>
#include <chrono>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/grpcpp.h"

namespace tpserve {
namespace {

std::chrono::system_clock::time_point Deadline(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoNanoseconds(d);
}

// One in-flight step fan-out: a context and response per rank.
struct StepFanout {
  v1::StepRequest request;
  std::vector<grpc::ClientContext> contexts;
  std::vector<v1::StepResponse> responses;
  std::atomic<int> remaining{0};
  std::atomic<bool> reported{false};  // `done` already ran (with the first error)
  WorkerGroup::StepCallback done;

  explicit StepFanout(int n) : contexts(n), responses(n), remaining(n) {}
};

// One in-flight best-effort Abort fan-out.
struct AbortFanout {
  v1::AbortRequest request;
  std::vector<grpc::ClientContext> contexts;
  std::vector<v1::AbortResponse> responses;
  std::atomic<int> remaining{0};

  explicit AbortFanout(int n) : contexts(n), responses(n), remaining(n) {}
};

}  // namespace

WorkerGroup::WorkerGroup(std::vector<std::string> addresses,
                         std::shared_ptr<grpc::ChannelCredentials> credentials)
    : addresses_(std::move(addresses)) {
  if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // Reconnect quickly to a restarted rank (gRPC's default backoff grows to 2 min).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  for (const std::string& address : addresses_) {
    stubs_.push_back(v1::Worker::NewStub(grpc::CreateCustomChannel(address, credentials, args)));
  }
}

WorkerGroup::~WorkerGroup() {
  absl::MutexLock lock(&inflight_mu_);
  inflight_mu_.Await(absl::Condition(
      +[](int* n) { return *n == 0; }, &inflight_));
}

void WorkerGroup::AddInflight(int n) {
  absl::MutexLock lock(&inflight_mu_);
  inflight_ += n;
}

absl::Status WorkerGroup::RankError(const grpc::Status& s, int rank, absl::string_view what) const {
  return absl::UnavailableError(absl::StrCat("worker rank ", rank, " (", addresses_[rank], ") ",
                                             what, " failed: ", s.error_message(), " [grpc code ",
                                             static_cast<int>(s.error_code()), "]"));
}

std::vector<grpc::Status> WorkerGroup::CallAll(
    absl::Duration timeout,
    const std::function<void(int, grpc::ClientContext*, std::function<void(grpc::Status)>)>&
        call) {
  const int n = world_size();
  std::vector<grpc::ClientContext> contexts(n);
  std::vector<grpc::Status> statuses(n);
  absl::BlockingCounter pending(n);
  for (int r = 0; r < n; ++r) {
    contexts[r].set_deadline(Deadline(timeout));
    call(r, &contexts[r], [&statuses, &pending, r](grpc::Status s) {
      statuses[r] = std::move(s);
      pending.DecrementCount();
    });
  }
  pending.Wait();
  return statuses;
}

std::vector<absl::StatusOr<v1::InfoResponse>> WorkerGroup::Info(absl::Duration timeout) {
  const v1::InfoRequest request;
  std::vector<v1::InfoResponse> responses(world_size());
  std::vector<grpc::Status> statuses =
      CallAll(timeout, [&](int r, grpc::ClientContext* ctx, std::function<void(grpc::Status)> cb) {
        stubs_[r]->async()->Info(ctx, &request, &responses[r], std::move(cb));
      });
  std::vector<absl::StatusOr<v1::InfoResponse>> out;
  for (int r = 0; r < world_size(); ++r) {
    if (statuses[r].ok()) {
      out.push_back(std::move(responses[r]));
    } else {
      out.push_back(RankError(statuses[r], r, "Info"));
    }
  }
  return out;
}

std::vector<absl::StatusOr<v1::HealthResponse>> WorkerGroup::Health(absl::Duration timeout) {
  const v1::HealthRequest request;
  std::vector<v1::HealthResponse> responses(world_size());
  std::vector<grpc::Status> statuses =
      CallAll(timeout, [&](int r, grpc::ClientContext* ctx, std::function<void(grpc::Status)> cb) {
        stubs_[r]->async()->Health(ctx, &request, &responses[r], std::move(cb));
      });
  std::vector<absl::StatusOr<v1::HealthResponse>> out;
  for (int r = 0; r < world_size(); ++r) {
    if (statuses[r].ok()) {
      out.push_back(std::move(responses[r]));
    } else {
      // Keep the gRPC code: the supervisor tells "exited" from "hung" by it.
      out.push_back(absl::Status(static_cast<absl::StatusCode>(statuses[r].error_code()),
                                 RankError(statuses[r], r, "Health").message()));
    }
  }
  return out;
}

absl::Status WorkerGroup::Join(const v1::JoinRequest& request, absl::Duration timeout) {
  std::vector<v1::JoinResponse> responses(world_size());
  std::vector<grpc::Status> statuses =
      CallAll(timeout, [&](int r, grpc::ClientContext* ctx, std::function<void(grpc::Status)> cb) {
        stubs_[r]->async()->Join(ctx, &request, &responses[r], std::move(cb));
      });
  // Report a refusal (e.g. a model mismatch) before the peers' timeouts it caused.
  for (int r = 0; r < world_size(); ++r) {
    if (statuses[r].error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      return absl::FailedPreconditionError(RankError(statuses[r], r, "Join").message());
    }
  }
  for (int r = 0; r < world_size(); ++r) {
    if (!statuses[r].ok()) return RankError(statuses[r], r, "Join");
  }
  return absl::OkStatus();
}

void WorkerGroup::Abort(uint64_t epoch, const std::string& reason) {
  const int n = world_size();
  auto* fan = new AbortFanout(n);
  fan->request.set_epoch(epoch);
  fan->request.set_reason(reason);
  AddInflight(1);
  for (int r = 0; r < n; ++r) {
    fan->contexts[r].set_deadline(Deadline(absl::Seconds(1)));
    stubs_[r]->async()->Abort(&fan->contexts[r], &fan->request, &fan->responses[r],
                              [this, fan](grpc::Status) {
                                if (fan->remaining.fetch_sub(1) != 1) return;
                                delete fan;
                                AddInflight(-1);
                              });
  }
}

void WorkerGroup::StepAsync(v1::StepRequest request, absl::Duration timeout, StepCallback done) {
  const int n = world_size();
  auto* fan = new StepFanout(n);
  fan->request = std::move(request);
  fan->done = std::move(done);
  AddInflight(1);
  for (int r = 0; r < n; ++r) {
    fan->contexts[r].set_deadline(Deadline(timeout));
    stubs_[r]->async()->Step(
        &fan->contexts[r], &fan->request, &fan->responses[r], [this, fan, r](grpc::Status s) {
          // The first failing rank fails the step at once: a dead rank must
          // not wait for its peers' collective timeout to be reported.
          if (!s.ok() && !fan->reported.exchange(true)) {
            absl::Status e = RankError(s, r, absl::StrCat("step ", fan->request.step_id()));
            if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
              e = absl::DeadlineExceededError(e.message());
            }
            e.SetPayload("tpserve.rank", absl::Cord(absl::StrCat(r)));
            fan->done(std::move(e));
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
          AddInflight(-1);
        });
  }
}

absl::StatusOr<v1::StepResponse> WorkerGroup::Step(const v1::StepRequest& request,
                                                   absl::Duration timeout) {
  absl::Notification finished;
  absl::StatusOr<v1::StepResponse> result;
  StepAsync(request, timeout, [&](absl::StatusOr<v1::StepResponse> r) {
    result = std::move(r);
    finished.Notify();
  });
  finished.WaitForNotification();
  return result;
}

absl::Status WorkerGroup::Free(const std::vector<uint64_t>& seq_ids) {
  v1::FreeRequest request;
  for (uint64_t id : seq_ids) request.add_seq_ids(id);
  std::vector<v1::FreeResponse> responses(world_size());
  std::vector<grpc::Status> statuses = CallAll(
      absl::Seconds(10), [&](int r, grpc::ClientContext* ctx, std::function<void(grpc::Status)> cb) {
        stubs_[r]->async()->Free(ctx, &request, &responses[r], std::move(cb));
      });
  for (int r = 0; r < world_size(); ++r) {
    if (!statuses[r].ok()) return RankError(statuses[r], r, "Free");
  }
  return absl::OkStatus();
}

}  // namespace tpserve
