// RouterMetrics: the router's Prometheus metrics (DESIGN.md, vLLM naming with
// a tpserve_ prefix and a model_name label), registered on one registry that
// the router's /metrics exposer serves.
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   RouterMetrics m(*registry, "SmolLM2-135M-Instruct");
//   m.time_to_first_token->Observe(0.05);
//   m.ObserveScheduler(snapshot);  // gauges + counter deltas
//
//   FrontendMetrics f(*registry, "SmolLM2-135M-Instruct");
//   f.CountRequest(Frontend::kHttp, absl::StatusCode::kOk, 1.5, 20, 64);
#ifndef TPSERVE_ROUTER_API_ROUTER_METRICS_H_
#define TPSERVE_ROUTER_API_ROUTER_METRICS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
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

  // Sets the gauges and advances the counters from a scheduler snapshot
  // (counters move by the difference to the previous snapshot).
  void ObserveScheduler(const SchedulerMetrics& m);
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
  prometheus::Gauge* workers_ready;  // 1 while a group epoch serves

  // Self-healing (router/cluster/group_supervisor.h).
  prometheus::Counter* requests_resumed;  // sequences re-queued after a group failure
  // Group state gauge (one series per state, the current one 1), recoveries
  // by cause, time to recover, the current epoch.
  void ObserveGroup(const GroupEvent& event);

 private:
  prometheus::Family<prometheus::Counter>* success_family_;
  std::string model_name_;
  prometheus::Counter* preemptions_;
  prometheus::Counter* prefix_queries_;
  prometheus::Counter* prefix_hits_;
  prometheus::Gauge* running_;
  prometheus::Gauge* waiting_;
  prometheus::Gauge* kv_usage_;
  prometheus::Family<prometheus::Gauge>* group_state_;
  prometheus::Family<prometheus::Counter>* recoveries_;
  prometheus::Histogram* recovery_seconds_;
  prometheus::Gauge* group_epoch_;
  SchedulerMetrics last_;
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
