// KvStore: the key-value store ranks rendezvous through. The caller provides
// it, so the router can host one (TcpKvStoreServer) and hand its address to
// the workers; tests run one in-process on port 0.
//
//   TcpKvStoreServer server;                       // router side
//   TPS_RETURN_IF_ERROR(server.Start("127.0.0.1", 0));
//   TcpKvStoreClient store("127.0.0.1", server.port());  // each rank
//   TPS_RETURN_IF_ERROR(store.Set("rank0", "addr"));
//   absl::StatusOr<std::string> v = store.Get("rank1", absl::Seconds(30));
#ifndef TPSERVE_RENDEZVOUS_KV_STORE_H_
#define TPSERVE_RENDEZVOUS_KV_STORE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tpserve {

class KvStore {
 public:
  virtual ~KvStore() = default;
  // Stores `value` under `key`, replacing any earlier value.
  [[nodiscard]] virtual absl::Status Set(const std::string& key, const std::string& value) = 0;
  // Waits up to `timeout` for `key` to exist and returns its value;
  // DEADLINE_EXCEEDED when it does not appear in time.
  [[nodiscard]] virtual absl::StatusOr<std::string> Get(const std::string& key,
                                                        absl::Duration timeout) = 0;
};

}  // namespace tpserve

#endif  // TPSERVE_RENDEZVOUS_KV_STORE_H_
