#include "router/api/router_metrics.h"

#include <cctype>
#include <vector>

namespace tpserve {
namespace {

using prometheus::Histogram;

// Latency buckets from 1 ms to 5 min (roughly x2.5 apart).
const Histogram::BucketBoundaries& LatencyBuckets() {
  static const Histogram::BucketBoundaries kBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,  0.25,  0.5,
      0.75,  1.0,    2.5,   5.0,  10.0,  20.0, 40.0,  80.0, 160.0, 300.0};
  return kBuckets;
}

const Histogram::BucketBoundaries& TokenBuckets() {
  static const Histogram::BucketBoundaries kBuckets = {1,   2,   4,   8,    16,   32,   64,
                                                       128, 256, 512, 1024, 2048, 4096, 8192};
  return kBuckets;
}

}  // namespace

RouterMetrics::RouterMetrics(prometheus::Registry& registry, const std::string& model_name)
    : model_name_(model_name) {
  const std::map<std::string, std::string> labels = {{"model_name", model_name}};
  auto histogram = [&](const char* name, const char* help, const Histogram::BucketBoundaries& b) {
    return &prometheus::BuildHistogram().Name(name).Help(help).Register(registry).Add(labels, b);
  };
  auto counter = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add(labels);
  };
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add(labels);
  };
  time_to_first_token =
      histogram("tpserve_time_to_first_token_seconds",
                "Time from request arrival to its first generated token.", LatencyBuckets());
  inter_token_latency =
      histogram("tpserve_inter_token_latency_seconds",
                "Time between consecutive generated tokens of a request.", LatencyBuckets());
  e2e_request_latency = histogram("tpserve_e2e_request_latency_seconds",
                                  "Time from request arrival to its last token.", LatencyBuckets());
  request_queue_time =
      histogram("tpserve_request_queue_time_seconds",
                "Time a request waited before its first scheduled step.", LatencyBuckets());
  iteration_tokens =
      histogram("tpserve_iteration_tokens", "Tokens processed per engine step.", TokenBuckets());
  step_round_trip = histogram("tpserve_router_step_seconds",
                              "Router-observed step time: send to every rank until all answered.",
                              LatencyBuckets());
  step_overhead = histogram("tpserve_router_step_overhead_seconds",
                            "Step round trip minus the slowest rank's engine time (gRPC and "
                            "router work on the critical path).",
                            LatencyBuckets());
  prompt_tokens = counter("tpserve_prompt_tokens_total", "Prompt tokens of admitted requests.");
  generation_tokens = counter("tpserve_generation_tokens_total", "Generated tokens.");
  rejected_requests = counter("tpserve_request_rejected_total",
                              "Requests refused at admission (queue full or cluster not ready).");
  success_family_ = &prometheus::BuildCounter()
                         .Name("tpserve_request_success_total")
                         .Help("Finished requests by finish reason (stop, length, abort).")
                         .Register(registry);
  for (const char* reason : {"stop", "length", "abort"}) {  // exported at 0 from the start
    success_family_->Add({{"model_name", model_name_}, {"finished_reason", reason}});
  }
  auto counters = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(registry);
  };
  auto gauges = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(registry);
  };
  preemptions_ = counters("tpserve_num_preemptions_total",
                          "Sequences preempted (KV cache full) and recomputed later, by group.");
  prefix_queries_ = counters("tpserve_prefix_cache_queries_total",
                             "Prompt tokens looked up in the prefix cache, by group.");
  prefix_hits_ = counters("tpserve_prefix_cache_hits_total",
                          "Prompt tokens served from the prefix cache, by group.");
  steps_ = counters("tpserve_group_steps_total", "Steps scheduled (non-empty), by group.");
  placed_ = counters("tpserve_requests_placed_total",
                     "Requests placed on a group (new ones, and ones moved after a failure).");
  running_ =
      gauges("tpserve_num_requests_running", "Requests with KV blocks, being generated, by group.");
  waiting_ = gauges("tpserve_num_requests_waiting",
                    "Requests queued for admission in a group (including preempted ones).");
  kv_usage_ = gauges("tpserve_kv_cache_usage_ratio",
                     "Fraction of a group's KV-cache blocks referenced by a request (0 to 1).");
  workers_ready = gauge("tpserve_workers_ready",
                        "Worker groups whose epoch serves (every rank loaded, joined and "
                        "answered the warm-up step).");
  requests_resumed = counter("tpserve_requests_resumed_total",
                             "Running or waiting requests re-queued (resumed by recompute) after "
                             "their worker group failed.");
  group_state_ = &prometheus::BuildGauge()
                      .Name("tpserve_group_state")
                      .Help("Worker group state: 1 for the current state, 0 for the others.")
                      .Register(registry);
  recoveries_ = &prometheus::BuildCounter()
                     .Name("tpserve_group_recoveries_total")
                     .Help(
                         "Group epochs ended by a failure, by cause (exited, hung, left_epoch, "
                         "step_failed, step_timeout).")
                     .Register(registry);
  recovery_seconds_ = &prometheus::BuildHistogram()
                           .Name("tpserve_group_recovery_seconds")
                           .Help("Time from a group failure to the next serving epoch.")
                           .Register(registry);
  group_epoch_ = &prometheus::BuildGauge()
                      .Name("tpserve_group_epoch")
                      .Help("The worker group's latest serving epoch.")
                      .Register(registry);
  absl::MutexLock lock(&mu_);
  Group(0);  // group 0 is exported from the start
}

std::map<std::string, std::string> RouterMetrics::GroupLabels(int group) const {
  return {{"model_name", model_name_}, {"group", std::to_string(group)}};
}

RouterMetrics::GroupSeries& RouterMetrics::Group(int group) {
  std::unique_ptr<GroupSeries>& g = groups_[group];
  if (g != nullptr) return *g;
  g = std::make_unique<GroupSeries>();
  const std::map<std::string, std::string> labels = GroupLabels(group);
  g->running = &running_->Add(labels);
  g->waiting = &waiting_->Add(labels);
  g->kv_usage = &kv_usage_->Add(labels);
  g->preemptions = &preemptions_->Add(labels);
  g->prefix_queries = &prefix_queries_->Add(labels);
  g->prefix_hits = &prefix_hits_->Add(labels);
  g->steps = &steps_->Add(labels);
  g->placed = &placed_->Add(labels);
  for (const char* state : {"starting", "serving", "recovering", "down"}) {
    std::map<std::string, std::string> l = labels;
    l["state"] = state;
    group_state_->Add(l).Set(std::string(state) == "starting" ? 1 : 0);
  }
  for (const char* cause : {"exited", "hung", "left_epoch", "step_failed", "step_timeout"}) {
    std::map<std::string, std::string> l = labels;
    l["cause"] = cause;
    recoveries_->Add(l);
  }
  recovery_seconds_->Add(labels, prometheus::Histogram::BucketBoundaries{0.5, 1, 2, 3, 5, 10, 20,
                                                                         30, 60, 120, 300, 600});
  group_epoch_->Add(labels);
  return *g;
}

void RouterMetrics::ObserveGroup(const GroupEvent& event) {
  absl::MutexLock lock(&mu_);
  Group(event.group);
  const std::map<std::string, std::string> labels = GroupLabels(event.group);
  for (GroupState s :
       {GroupState::kStarting, GroupState::kServing, GroupState::kRecovering, GroupState::kDown}) {
    std::map<std::string, std::string> l = labels;
    l["state"] = GroupStateName(s);
    group_state_->Add(l).Set(s == event.state ? 1 : 0);
  }
  if (event.state == GroupState::kServing) {
    serving_.insert(event.group);
  } else {
    serving_.erase(event.group);
  }
  workers_ready->Set(static_cast<double>(serving_.size()));
  if (event.state == GroupState::kRecovering && !event.cause.empty()) {
    std::map<std::string, std::string> l = labels;
    l["cause"] = event.cause;
    recoveries_->Add(l).Increment();
  }
  if (event.state == GroupState::kServing) {
    group_epoch_->Add(labels).Set(static_cast<double>(event.epoch));
    if (event.recovery_seconds >= 0) {
      recovery_seconds_
          ->Add(labels, prometheus::Histogram::BucketBoundaries{0.5, 1, 2, 3, 5, 10, 20, 30, 60,
                                                                120, 300, 600})
          .Observe(event.recovery_seconds);
    }
  }
}

void RouterMetrics::CountPlaced(int group) {
  absl::MutexLock lock(&mu_);
  Group(group).placed->Increment();
}

void RouterMetrics::CountFinished(const std::string& finished_reason) {
  success_family_->Add({{"model_name", model_name_}, {"finished_reason", finished_reason}})
      .Increment();
}

void RouterMetrics::ObserveScheduler(int group, const SchedulerMetrics& m) {
  absl::MutexLock lock(&mu_);
  GroupSeries& g = Group(group);
  g.running->Set(static_cast<double>(m.num_running));
  g.waiting->Set(static_cast<double>(m.num_waiting));
  g.kv_usage->Set(m.kv_cache_usage_ratio);
  // A new scheduler (after a worker failure) restarts its counters at zero.
  auto advance = [](prometheus::Counter* c, int64_t now, int64_t before) {
    if (now < before) before = 0;
    if (now > before) c->Increment(static_cast<double>(now - before));
  };
  advance(g.preemptions, m.num_preemptions_total, g.last.num_preemptions_total);
  advance(g.prefix_queries, m.prefix_cache_queries_total, g.last.prefix_cache_queries_total);
  advance(g.prefix_hits, m.prefix_cache_hits_total, g.last.prefix_cache_hits_total);
  advance(g.steps, m.num_steps_total, g.last.num_steps_total);
  g.last = m;
}

const char* FrontendName(Frontend frontend) {
  return frontend == Frontend::kGrpc ? "grpc" : "http";
}

FrontendMetrics::FrontendMetrics(prometheus::Registry& registry, const std::string& model_name)
    : model_name_(model_name) {
  requests_ = &prometheus::BuildCounter()
                   .Name("tpserve_frontend_requests_total")
                   .Help("Requests by public front end (grpc, http) and final status code.")
                   .Register(registry);
  auto& duration = prometheus::BuildHistogram()
                       .Name("tpserve_frontend_request_duration_seconds")
                       .Help(
                           "Time from a request's arrival at a front end until its response "
                           "closed (success or error).")
                       .Register(registry);
  auto& prompt = prometheus::BuildCounter()
                     .Name("tpserve_frontend_prompt_tokens_total")
                     .Help("Prompt tokens of finished requests, by front end.")
                     .Register(registry);
  auto& generated = prometheus::BuildCounter()
                        .Name("tpserve_frontend_generation_tokens_total")
                        .Help("Generated tokens of finished requests, by front end.")
                        .Register(registry);
  for (Frontend f : {Frontend::kGrpc, Frontend::kHttp}) {
    const std::map<std::string, std::string> labels = {{"model_name", model_name},
                                                       {"frontend", FrontendName(f)}};
    const int i = static_cast<int>(f);
    duration_[i] = &duration.Add(labels, LatencyBuckets());
    prompt_tokens_[i] = &prompt.Add(labels);
    generation_tokens_[i] = &generated.Add(labels);
    std::map<std::string, std::string> ok = labels;
    ok["code"] = "ok";
    requests_->Add(ok);  // exported at 0 from the start
  }
}

void FrontendMetrics::CountRequest(Frontend frontend, absl::StatusCode code, double seconds,
                                   int64_t prompt_tokens, int64_t generation_tokens) {
  std::string name = absl::StatusCodeToString(code);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const int i = static_cast<int>(frontend);
  requests_
      ->Add({{"model_name", model_name_}, {"frontend", FrontendName(frontend)}, {"code", name}})
      .Increment();
  duration_[i]->Observe(seconds);
  if (prompt_tokens > 0) prompt_tokens_[i]->Increment(static_cast<double>(prompt_tokens));
  if (generation_tokens > 0) {
    generation_tokens_[i]->Increment(static_cast<double>(generation_tokens));
  }
}

}  // namespace tpserve
