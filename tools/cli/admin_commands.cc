#include "tools/cli/admin_commands.h"

#include <chrono>
#include <cstdio>
#include <string>

#include "absl/strings/str_format.h"

namespace tpserve {
namespace {

void Prepare(grpc::ClientContext* ctx, const std::string& api_key, double timeout_s) {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  if (!api_key.empty()) ctx->AddMetadata("authorization", "Bearer " + api_key);
}

int Fail(const grpc::Status& status) {
  std::fprintf(stderr, "error: code %d: %s\n", static_cast<int>(status.error_code()),
               status.error_message().c_str());
  return 1;
}

void PrintHeader() {
  std::printf("%-6s %-11s %6s %-8s %-5s %7s %7s %6s %7s %8s  %s\n", "GROUP", "STATE", "EPOCH",
              "DRAINED", "IDLE", "RUNNING", "WAITING", "KV", "LOAD", "PLACED", "REASON");
}

void PrintGroup(const v1::GroupStatus& g) {
  std::printf("%-6d %-11s %6llu %-8s %-5s %7d %7d %5.0f%% %7.1f %8lld  %s\n", g.group(),
              g.state().c_str(), static_cast<unsigned long long>(g.epoch()),
              g.drained() ? "yes" : "no", g.idle() ? "yes" : "no", g.running(), g.waiting(),
              g.kv_cache_usage() * 100, g.load(), static_cast<long long>(g.requests_placed()),
              g.reason().c_str());
}

}  // namespace

int ListGroups(v1::Admin::Stub& stub, const std::string& api_key, double timeout_s) {
  grpc::ClientContext ctx;
  Prepare(&ctx, api_key, timeout_s);
  v1::ListGroupsResponse response;
  grpc::Status s = stub.ListGroups(&ctx, v1::ListGroupsRequest(), &response);
  if (!s.ok()) return Fail(s);
  PrintHeader();
  for (const v1::GroupStatus& g : response.groups()) PrintGroup(g);
  return 0;
}

int SetDrained(v1::Admin::Stub& stub, const std::string& api_key, int group, bool drained,
               double timeout_s) {
  grpc::ClientContext ctx;
  Prepare(&ctx, api_key, timeout_s);
  v1::DrainRequest request;
  request.set_group(group);
  v1::GroupStatus response;
  grpc::Status s =
      drained ? stub.Drain(&ctx, request, &response) : stub.Undrain(&ctx, request, &response);
  if (!s.ok()) return Fail(s);
  PrintHeader();
  PrintGroup(response);
  return 0;
}

}  // namespace tpserve
