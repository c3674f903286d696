// Blocking socket helpers shared by the TCP key-value store's server and
// client: full reads/writes that report a closed peer or a receive timeout as
// a Status instead of a short count.
//
//   TPS_RETURN_IF_ERROR(WriteAll(fd, buf.data(), buf.size()));
#ifndef TPSERVE_RENDEZVOUS_SOCKET_IO_H_
#define TPSERVE_RENDEZVOUS_SOCKET_IO_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tpserve {

[[nodiscard]] absl::Status WriteAll(int fd, const void* data, size_t size);
[[nodiscard]] absl::Status ReadAll(int fd, void* data, size_t size);
[[nodiscard]] absl::Status WriteU32(int fd, uint32_t v);
[[nodiscard]] absl::StatusOr<uint32_t> ReadU32(int fd);
// Reads a u32 length then that many bytes (at most `max_size`).
[[nodiscard]] absl::StatusOr<std::string> ReadSized(int fd, uint32_t max_size);
// Connects a TCP socket to host:port; returns the fd.
[[nodiscard]] absl::StatusOr<int> ConnectTcp(const std::string& host, int port);
// Sets SO_RCVTIMEO (zero = wait forever).
void SetReceiveTimeout(int fd, absl::Duration timeout);

}  // namespace tpserve

#endif  // TPSERVE_RENDEZVOUS_SOCKET_IO_H_
