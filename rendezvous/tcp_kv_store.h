// A small TCP key-value store for rank rendezvous: TcpKvStoreServer holds the
// map (the router hosts one, or a test on port 0), TcpKvStoreClient is the
// KvStore each rank uses. Get blocks on the server until the key exists or the
// caller's timeout passes, so ranks can publish and wait in any order.
//
// Wire format (all integers little-endian u32):
//   Set: 'S' klen key vlen value          -> 0
//   Get: 'G' klen key timeout_ms          -> 0 vlen value | 1 (timed out)
//
//   TcpKvStoreServer server;
//   TPS_RETURN_IF_ERROR(server.Start("127.0.0.1", /*port=*/0));
//   TcpKvStoreClient client("127.0.0.1", server.port());
#ifndef TPSERVE_RENDEZVOUS_TCP_KV_STORE_H_
#define TPSERVE_RENDEZVOUS_TCP_KV_STORE_H_

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "rendezvous/kv_store.h"

namespace tpserve {

class TcpKvStoreServer {
 public:
  TcpKvStoreServer() = default;
  ~TcpKvStoreServer();  // Stops and joins every thread.
  TcpKvStoreServer(const TcpKvStoreServer&) = delete;
  TcpKvStoreServer& operator=(const TcpKvStoreServer&) = delete;

  // Listens on host:port (port 0 picks a free one; see port()) and serves:
  // Listen() then Serve().
  [[nodiscard]] absl::Status Start(const std::string& host, int port);
  // Binds and listens without starting a thread; connections queue until
  // Serve(). A process that forks rank processes does so between the two:
  // a child forked while the server's threads run can inherit a lock one of
  // them held (absl's thread-identity free list, say) and hang at its first
  // blocking wait.
  [[nodiscard]] absl::Status Listen(const std::string& host, int port);
  void Serve();  // Starts accepting (after Listen).
  int port() const { return port_; }
  void Stop();

 private:
  void AcceptLoop();
  void Serve(int fd);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;

  absl::Mutex mu_;
  std::map<std::string, std::string> data_ ABSL_GUARDED_BY(mu_);
  std::set<int> conn_fds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> conn_threads_ ABSL_GUARDED_BY(mu_);
};

class TcpKvStoreClient : public KvStore {
 public:
  // Connects lazily on first use, retrying until `connect_timeout` passes
  // (the server may start after the ranks).
  TcpKvStoreClient(std::string host, int port, absl::Duration connect_timeout = absl::Seconds(30));
  ~TcpKvStoreClient() override;

  [[nodiscard]] absl::Status Set(const std::string& key, const std::string& value) override;
  [[nodiscard]] absl::StatusOr<std::string> Get(const std::string& key,
                                                absl::Duration timeout) override;

 private:
  absl::Status EnsureConnected() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::string host_;
  int port_;
  absl::Duration connect_timeout_;
  absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
};

}  // namespace tpserve

#endif  // TPSERVE_RENDEZVOUS_TCP_KV_STORE_H_
