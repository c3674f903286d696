// AdminService: tpserve.v1.Admin (proto/tpserve/v1/admin.proto), the
// operator API on the router's gRPC port. ListGroups joins each group
// supervisor's state with the serving loop's view of its load; Drain and
// Undrain stop and resume placements on a group (ServingLoop::SetDrained).
// With API keys on, every call needs a key with the `admin` grant
// (UNAUTHENTICATED without a known key, PERMISSION_DENIED without the grant).
//
//   AdminService admin({&group0, &group1}, api_keys);  // api_keys may be null
//   builder.RegisterService(&admin);
//   ...
//   admin.SetLoop(&loop);  // once serving; until then Drain is UNAVAILABLE
#ifndef TPSERVE_ROUTER_API_ADMIN_SERVICE_H_
#define TPSERVE_ROUTER_API_ADMIN_SERVICE_H_

#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "proto/tpserve/v1/admin.grpc.pb.h"
#include "router/api/api_keys.h"
#include "router/api/serving_loop.h"
#include "router/cluster/group_supervisor.h"

namespace tpserve {

class AdminService final : public v1::Admin::Service {
 public:
  // `groups[g]` is group g; each, and `api_keys` when not null (null = no
  // keys required), must outlive the service.
  AdminService(std::vector<const GroupSupervisor*> groups, ApiKeys* api_keys);

  // The loop must outlive the service (or be reset with nullptr first).
  void SetLoop(ServingLoop* loop);

  grpc::Status ListGroups(grpc::ServerContext* context, const v1::ListGroupsRequest* request,
                          v1::ListGroupsResponse* response) override;
  grpc::Status Drain(grpc::ServerContext* context, const v1::DrainRequest* request,
                     v1::GroupStatus* response) override;
  grpc::Status Undrain(grpc::ServerContext* context, const v1::DrainRequest* request,
                       v1::GroupStatus* response) override;

 private:
  // OK when keys are off or the call carries an admin key.
  grpc::Status Authorize(const grpc::ServerContext& context);
  grpc::Status SetDrained(const v1::DrainRequest& request, bool drained, v1::GroupStatus* response);
  // Group `g`'s status; `snapshot` may be null (loop not running yet).
  v1::GroupStatus Status(int g, const ServingLoop::GroupSnapshot* snapshot) const;

  const std::vector<const GroupSupervisor*> groups_;
  ApiKeys* const api_keys_;
  absl::Mutex mu_;
  ServingLoop* loop_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_ADMIN_SERVICE_H_
