// Status helpers: early-return macros over absl::Status / absl::StatusOr.
//
// Errors the environment can cause (files, config, network, bad requests) travel
// as absl::Status; invariants use TPS_CHECK (common/check.h). Example:
//
//   absl::StatusOr<Header> ReadHeader(Reader& r) {
//     TPS_ASSIGN_OR_RETURN(uint32_t magic, r.ReadU32());
//     if (magic != kMagic) return absl::InvalidArgumentError("bad magic");
//     TPS_RETURN_IF_ERROR(r.Skip(4));
//     ...
//   }
#ifndef TPSERVE_COMMON_STATUS_H_
#define TPSERVE_COMMON_STATUS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#define TPS_STATUS_CONCAT_INNER_(a, b) a##b
#define TPS_STATUS_CONCAT_(a, b) TPS_STATUS_CONCAT_INNER_(a, b)

// Returns `expr` from the enclosing function if it is not OK.
#define TPS_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::absl::Status tps_status_ = (expr);       \
    if (!tps_status_.ok()) return tps_status_; \
  } while (false)

// `lhs = value of expr`, or returns its error from the enclosing function.
#define TPS_ASSIGN_OR_RETURN(lhs, expr) \
  TPS_ASSIGN_OR_RETURN_IMPL_(TPS_STATUS_CONCAT_(tps_statusor_, __LINE__), lhs, expr)

#define TPS_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)    \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

namespace tpserve {

// Prefixes `status`'s message with `context` ("reading model.gguf: ..."),
// keeping its code. OK passes through unchanged.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace tpserve

#endif  // TPSERVE_COMMON_STATUS_H_
