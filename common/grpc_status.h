// absl::Status -> grpc::Status for the gRPC services (router/api, the worker
// service): code and message unchanged (the two code enums share values).
// The one target in common/ that links gRPC; the compute core never uses it.
//
//   return ToGrpcStatus(engine_status);
#ifndef TPSERVE_COMMON_GRPC_STATUS_H_
#define TPSERVE_COMMON_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace tpserve {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace tpserve

#endif  // TPSERVE_COMMON_GRPC_STATUS_H_
