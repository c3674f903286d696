#include "worker/service/worker_metrics.h"

#include <algorithm>
#include <map>

namespace tpserve {
namespace {

using prometheus::Histogram;

const Histogram::BucketBoundaries& StepBuckets() {
  static const Histogram::BucketBoundaries kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0, 30.0};
  return kBuckets;
}

}  // namespace

WorkerMetrics::WorkerMetrics(prometheus::Registry& registry, const std::string& model_name,
                             int rank) {
  const std::string r = std::to_string(rank);
  auto& step = prometheus::BuildHistogram()
                   .Name("tpserve_worker_step_duration_seconds")
                   .Help(
                       "Engine step wall time by phase: total, compute (outside collectives "
                       "and sampling), allreduce (inside collectives), sample (rank 0).")
                   .Register(registry);
  auto labels = [&](const char* phase) {
    return std::map<std::string, std::string>{
        {"model_name", model_name}, {"rank", r}, {"phase", phase}};
  };
  step_total_ = &step.Add(labels("total"), StepBuckets());
  step_compute_ = &step.Add(labels("compute"), StepBuckets());
  step_sample_ = &step.Add(labels("sample"), StepBuckets());
  const std::map<std::string, std::string> base = {{"model_name", model_name}, {"rank", r}};
  allreduce_ = &prometheus::BuildHistogram()
                    .Name("tpserve_worker_allreduce_duration_seconds")
                    .Help("Time one step spent in collectives (all-reduce, all-gather).")
                    .Register(registry)
                    .Add(base, StepBuckets());
  tokens_ = &prometheus::BuildCounter()
                 .Name("tpserve_worker_tokens_processed_total")
                 .Help("Tokens run through the forward pass (prefill and decode).")
                 .Register(registry)
                 .Add(base);
  steps_ = &prometheus::BuildCounter()
                .Name("tpserve_worker_steps_total")
                .Help("Engine steps completed.")
                .Register(registry)
                .Add(base);
  graph_steps_ = &prometheus::BuildCounter()
                      .Name("tpserve_worker_cuda_graph_steps_total")
                      .Help("Steps replayed from a CUDA graph (backend cuda, decode).")
                      .Register(registry)
                      .Add(base);
  step_errors_ = &prometheus::BuildCounter()
                      .Name("tpserve_worker_step_errors_total")
                      .Help("Steps that failed (bad input or a communicator error).")
                      .Register(registry)
                      .Add(base);
  auto& memory = prometheus::BuildGauge()
                     .Name("tpserve_worker_device_memory_bytes")
                     .Help("Memory this rank holds, by kind (weights, kv_cache).")
                     .Register(registry);
  memory_weights_ = &memory.Add({{"model_name", model_name}, {"rank", r}, {"kind", "weights"}});
  memory_kv_ = &memory.Add({{"model_name", model_name}, {"rank", r}, {"kind", "kv_cache"}});
  weights_loaded_ = &prometheus::BuildGauge()
                         .Name("tpserve_worker_weights_loaded")
                         .Help("1 once this rank's weight shard is loaded and its group joined.")
                         .Register(registry)
                         .Add(base);
}

void WorkerMetrics::ObserveStep(double total_s, double comm_s, double sample_s, int64_t tokens,
                                bool graph_replay) {
  step_total_->Observe(total_s);
  step_compute_->Observe(std::max(0.0, total_s - comm_s - sample_s));
  step_sample_->Observe(sample_s);
  allreduce_->Observe(comm_s);
  tokens_->Increment(static_cast<double>(tokens));
  steps_->Increment();
  if (graph_replay) graph_steps_->Increment();
}

void WorkerMetrics::SetMemory(int64_t weight_bytes, int64_t kv_cache_bytes) {
  memory_weights_->Set(static_cast<double>(weight_bytes));
  memory_kv_->Set(static_cast<double>(kv_cache_bytes));
}

}  // namespace tpserve
