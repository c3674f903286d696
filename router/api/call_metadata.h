// The credentials a gRPC call carries, read the same way by every service on
// the router's public port (Generation, Admin).
//
//   keys->Authenticate(AuthorizationMetadata(*context));
#ifndef TPSERVE_ROUTER_API_CALL_METADATA_H_
#define TPSERVE_ROUTER_API_CALL_METADATA_H_

#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"

namespace tpserve {

// The call's "authorization" metadata ("" when absent).
inline absl::string_view AuthorizationMetadata(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return "";
  return absl::string_view(it->second.data(), it->second.size());
}

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_CALL_METADATA_H_
