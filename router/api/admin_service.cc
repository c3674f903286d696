#include "router/api/admin_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "router/api/call_metadata.h"

namespace tpserve {

AdminService::AdminService(std::vector<const GroupSupervisor*> groups, ApiKeys* api_keys)
    : groups_(std::move(groups)), api_keys_(api_keys) {}

grpc::Status AdminService::Authorize(const grpc::ServerContext& context) {
  if (api_keys_ == nullptr) return grpc::Status::OK;
  return ToGrpcStatus(api_keys_->AuthenticateAdmin(AuthorizationMetadata(context)).status());
}

void AdminService::SetLoop(ServingLoop* loop) {
  absl::MutexLock lock(&mu_);
  loop_ = loop;
}

v1::GroupStatus AdminService::Status(int g, const ServingLoop::GroupSnapshot* snapshot) const {
  const GroupSupervisor& group = *groups_[g];
  v1::GroupStatus s;
  s.set_group(g);
  const GroupState state = group.state();
  s.set_state(GroupStateName(state));
  s.set_epoch(group.epoch());
  s.set_world_size(group.world_size());
  if (state != GroupState::kServing) s.set_reason(group.DownReason());
  s.set_idle(true);
  if (snapshot != nullptr) {
    s.set_drained(snapshot->drained);
    s.set_idle(snapshot->live == 0);
    s.set_running(static_cast<int32_t>(snapshot->scheduler.num_running));
    s.set_waiting(static_cast<int32_t>(snapshot->scheduler.num_waiting));
    s.set_kv_cache_usage(snapshot->scheduler.kv_cache_usage_ratio);
    s.set_load(snapshot->load);
    s.set_requests_placed(snapshot->placed_total);
    s.set_prefix_cache_hit_tokens(snapshot->scheduler.prefix_cache_hits_total);
    s.set_prefix_cache_query_tokens(snapshot->scheduler.prefix_cache_queries_total);
  }
  return s;
}

grpc::Status AdminService::ListGroups(grpc::ServerContext* context, const v1::ListGroupsRequest*,
                                      v1::ListGroupsResponse* response) {
  if (grpc::Status s = Authorize(*context); !s.ok()) return s;
  std::vector<ServingLoop::GroupSnapshot> snapshots;
  {
    absl::MutexLock lock(&mu_);
    if (loop_ != nullptr) snapshots = loop_->Snapshot();
  }
  for (int g = 0; g < static_cast<int>(groups_.size()); ++g) {
    const bool known = g < static_cast<int>(snapshots.size());
    *response->add_groups() = Status(g, known ? &snapshots[g] : nullptr);
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::SetDrained(const v1::DrainRequest& request, bool drained,
                                      v1::GroupStatus* response) {
  const int g = request.group();
  if (g < 0 || g >= static_cast<int>(groups_.size())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("group ", g, " does not exist: this router has groups 0..",
                                     groups_.size() - 1, " (--max_groups)"));
  }
  absl::MutexLock lock(&mu_);
  if (loop_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the router is not serving yet (waiting for its first groups); retry");
  }
  loop_->SetDrained(g, drained);
  std::vector<ServingLoop::GroupSnapshot> snapshots = loop_->Snapshot();
  *response = Status(g, &snapshots[g]);
  return grpc::Status::OK;
}

grpc::Status AdminService::Drain(grpc::ServerContext* context, const v1::DrainRequest* request,
                                 v1::GroupStatus* response) {
  if (grpc::Status s = Authorize(*context); !s.ok()) return s;
  return SetDrained(*request, true, response);
}

grpc::Status AdminService::Undrain(grpc::ServerContext* context, const v1::DrainRequest* request,
                                   v1::GroupStatus* response) {
  if (grpc::Status s = Authorize(*context); !s.ok()) return s;
  return SetDrained(*request, false, response);
}

}  // namespace tpserve
