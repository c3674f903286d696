// The `tpserve` CLI's operator subcommands over tpserve.v1.Admin
// (proto/tpserve/v1/admin.proto): list the router's worker groups, drain and
// undrain one. Each returns the process exit code (0 ok, 1 RPC error).
// `api_key` ("" = none) is sent as "authorization: Bearer <key>"; a router
// with --api_keys_file wants a key with the `admin` grant.
//
//   auto stub = tpserve::v1::Admin::NewStub(channel);
//   return tpserve::ListGroups(*stub, key, /*timeout_s=*/10);   // tpserve groups
//   return tpserve::SetDrained(*stub, key, 1, true, 10);        // tpserve drain 1
#ifndef TPSERVE_TOOLS_CLI_ADMIN_COMMANDS_H_
#define TPSERVE_TOOLS_CLI_ADMIN_COMMANDS_H_

#include <string>

#include "proto/tpserve/v1/admin.grpc.pb.h"

namespace tpserve {

// Prints one line per group: state, epoch, drained/idle, load.
int ListGroups(v1::Admin::Stub& stub, const std::string& api_key, double timeout_s);
// Drains (drained = true) or undrains `group`, then prints its line.
int SetDrained(v1::Admin::Stub& stub, const std::string& api_key, int group, bool drained,
               double timeout_s);

}  // namespace tpserve

#endif  // TPSERVE_TOOLS_CLI_ADMIN_COMMANDS_H_
