// RouterMetrics: the router's Prometheus metrics (DESIGN.md, vLLM naming with
// a tpserve_ prefix and a model_name label), registered on one registry that
// the router's /metrics exposer serves.
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   RouterMetrics m(*registry, "SmolLM2-135M-Instruct");
//   m.time_to_first_token->Observe(0.05);
//   m.ObserveScheduler(/*group=*/0, snapshot);  // gauges + counter deltas
//
// Per-group series (scheduler gauges and counters, steps, placements, group
// state) carry a `group` label ("0", "1", ...).
//
//   FrontendMetrics f(*registry, "SmolLM2-135M-Instruct");
//   f.CountRequest(Frontend::kHttp, absl::StatusCode::kOk, 1.5, 20, 64);
#ifndef TPSERVE_ROUTER_API_ROUTER_METRICS_H_
#define TPSERVE_ROUTER_API_ROUTER_METRICS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "router/cluster/group_supervisor.h"
#include "router/scheduler/scheduler.h"

namespace tpserve {

class RouterMetrics {
 public:
  RouterMetrics(prometheus::Registry& registry, const std::string& model_name);

  // Sets group `group`'s gauges and advances its counters from a scheduler
  // snapshot (counters move by the difference to the group's previous one).
  void ObserveScheduler(int group, const SchedulerMetrics& m);
  // A request was placed on (or moved to) `group`.
  void CountPlaced(int group);
  // finished_reason: "stop", "length" or "abort".
  void CountFinished(const std::string& finished_reason);

  // Histograms (seconds unless named otherwise).
  prometheus::Histogram* time_to_first_token;
  prometheus::Histogram* inter_token_latency;
  prometheus::Histogram* e2e_request_latency;
  prometheus::Histogram* request_queue_time;
  prometheus::Histogram* iteration_tokens;  // tokens per step
  // Router-observed step round trip, and the part of it not spent in the
  // engine (gRPC, serialization, scheduling on the critical path).
  prometheus::Histogram* step_round_trip;
  prometheus::Histogram* step_overhead;

  // Counters.
  prometheus::Counter* prompt_tokens;
  prometheus::Counter* generation_tokens;
  prometheus::Counter* rejected_requests;  // RESOURCE_EXHAUSTED and UNAVAILABLE at admission

  // Gauges.
  prometheus::Gauge* workers_ready;  // number of groups whose epoch serves

  // Self-healing (router/cluster/group_supervisor.h).
  prometheus::Counter* requests_resumed;  // sequences re-queued after a group failure
  // Group state gauge (one series per state, the current one 1), recoveries
  // by cause, time to recover, the current epoch; event.group names the group.
  void ObserveGroup(const GroupEvent& event);

 private:
  struct GroupSeries {
    prometheus::Gauge* running;
    prometheus::Gauge* waiting;
    prometheus::Gauge* kv_usage;
    prometheus::Counter* preemptions;
    prometheus::Counter* prefix_queries;
    prometheus::Counter* prefix_hits;
    prometheus::Counter* steps;
    prometheus::Counter* placed;
    SchedulerMetrics last;
  };
  // Creates the group's series on first use.
  GroupSeries& Group(int group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::map<std::string, std::string> GroupLabels(int group) const;

  prometheus::Family<prometheus::Counter>* success_family_;
  std::string model_name_;
  prometheus::Family<prometheus::Counter>* preemptions_;
  prometheus::Family<prometheus::Counter>* prefix_queries_;
  prometheus::Family<prometheus::Counter>* prefix_hits_;
  prometheus::Family<prometheus::Counter>* steps_;
  prometheus::Family<prometheus::Counter>* placed_;
  prometheus::Family<prometheus::Gauge>* running_;
  prometheus::Family<prometheus::Gauge>* waiting_;
  prometheus::Family<prometheus::Gauge>* kv_usage_;
  prometheus::Family<prometheus::Gauge>* group_state_;
  prometheus::Family<prometheus::Counter>* recoveries_;
  prometheus::Family<prometheus::Histogram>* recovery_seconds_;
  prometheus::Family<prometheus::Gauge>* group_epoch_;
  absl::Mutex mu_;  // the loop thread and the group supervisors both report
  std::map<int, std::unique_ptr<GroupSeries>> groups_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<int> serving_ ABSL_GUARDED_BY(mu_);
};

// Which public front end a request came through (the `frontend` label).
enum class Frontend { kGrpc, kHttp };
const char* FrontendName(Frontend frontend);  // "grpc" or "http"

// Per-front-end request accounting, counted where each front end finishes a
// request (after its stream closed or it was refused), so the same work sent
// over gRPC and over HTTP is told apart:
//   tpserve_frontend_requests_total{frontend, code}        by final status
//   tpserve_frontend_request_duration_seconds{frontend}    arrival to close
//   tpserve_frontend_prompt_tokens_total{frontend}
//   tpserve_frontend_generation_tokens_total{frontend}
// `code` is the lower-case status name ("ok", "invalid_argument",
// "resource_exhausted", "cancelled", ...). Thread-safe.
class FrontendMetrics {
 public:
  FrontendMetrics(prometheus::Registry& registry, const std::string& model_name);

  void CountRequest(Frontend frontend, absl::StatusCode code, double seconds, int64_t prompt_tokens,
                    int64_t generation_tokens);

 private:
  std::string model_name_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Histogram* duration_[2];
  prometheus::Counter* prompt_tokens_[2];
  prometheus::Counter* generation_tokens_[2];
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_ROUTER_METRICS_H_
