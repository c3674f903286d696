// ResponseSink: where the serving loop delivers one request's stream. The gRPC
// Generate reactor implements it; tests collect into memory. Calls come from
// the serving loop thread, in order; Close is the last call.
//
//   sink->Send(response);          // zero or more
//   sink->Close(absl::OkStatus()); // or an error status (no more Sends)
#ifndef TPSERVE_ROUTER_API_RESPONSE_SINK_H_
#define TPSERVE_ROUTER_API_RESPONSE_SINK_H_

#include "absl/status/status.h"
#include "proto/tpserve/v1/generation.pb.h"

namespace tpserve {

class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual void Send(v1::GenerateResponse response) = 0;
  virtual void Close(absl::Status status) = 0;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_API_RESPONSE_SINK_H_
