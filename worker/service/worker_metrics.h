// WorkerMetrics: one worker rank's Prometheus metrics (labels model_name and
// rank): step duration by phase, all-reduce (collective) time per step,
// tokens processed, memory by kind, weights loaded.
//
//   WorkerMetrics m(*registry, "SmolLM2-135M-Instruct", /*rank=*/0);
//   m.ObserveStep(engine.last_timings());
#ifndef TPSERVE_WORKER_SERVICE_WORKER_METRICS_H_
#define TPSERVE_WORKER_SERVICE_WORKER_METRICS_H_

#include <cstdint>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace tpserve {

struct StepTimings;

class WorkerMetrics {
 public:
  WorkerMetrics(prometheus::Registry& registry, const std::string& model_name, int rank);

  // One engine step: phases total / compute / allreduce / sample, tokens.
  // `graph_replay`: the step was replayed from a CUDA graph (backend cuda).
  void ObserveStep(double total_s, double comm_s, double sample_s, int64_t tokens,
                   bool graph_replay = false);
  void StepFailed() { step_errors_->Increment(); }
  void SetMemory(int64_t weight_bytes, int64_t kv_cache_bytes);
  void SetLoaded(bool loaded) { weights_loaded_->Set(loaded ? 1 : 0); }

 private:
  prometheus::Histogram* step_total_;
  prometheus::Histogram* step_compute_;
  prometheus::Histogram* step_sample_;
  prometheus::Histogram* allreduce_;
  prometheus::Counter* tokens_;
  prometheus::Counter* steps_;
  prometheus::Counter* graph_steps_;
  prometheus::Counter* step_errors_;
  prometheus::Gauge* memory_weights_;
  prometheus::Gauge* memory_kv_;
  prometheus::Gauge* weights_loaded_;
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_SERVICE_WORKER_METRICS_H_
