// RouterMetrics: the router's Prometheus metrics (DESIGN.md, vLLM naming with
// a tpserve_ prefix and a model_name label), registered on one registry that
// the router's /metrics exposer serves.
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   RouterMetrics m(*registry, "SmolLM2-135M-Instruct");
//   m.time_to_first_token->Observe(0.05);
//   m.ObserveScheduler(snapshot);  // gauges + counter deltas
#ifndef TPSERVE_ROUTER_API_ROUTER_METRICS_H_
#define TPSERVE_ROUTER_API_ROUTER_METRICS_H_

#include <cstdint>
#include <string>

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
  void ObserveScheduler(const router::SchedulerMetrics& m);
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
  router::SchedulerMetrics last_;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_ROUTER_METRICS_H_
