// Registrar: keeps this worker registered with whichever router currently
// hosts the rendezvous store. It publishes "<host>:<port>" under
// WorkerKey(session, group, rank) (rendezvous/keys.h) for the store's current
// session, then
// checks every `interval` that the session is unchanged; when the router
// restarts (new session) or the store is unreachable, it registers again as
// soon as a store answers. The router finds the worker from that key; the
// worker needs no restart when the router does.
//
//   Registrar reg("10.0.0.1", 29500, /*rank=*/1, "10.0.0.2:50061", log,
//                 absl::Seconds(1), cluster_tls.ChannelCredentials());
//   reg.SetGroup(2);           // tensor-parallel group (default 0), before Start
//   reg.Start();               // background thread
//   std::string s = reg.session();  // "" until registered
//   reg.Stop();
#ifndef TPSERVE_WORKER_SERVICE_REGISTRAR_H_
#define TPSERVE_WORKER_SERVICE_REGISTRAR_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"

namespace tpserve {

class Registrar {
 public:
  Registrar(std::string store_host, int store_port, int rank, std::string address,
            std::function<void(const std::string&)> log, absl::Duration interval = absl::Seconds(1),
            // The store's channel credentials; null = plaintext.
            std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);
  ~Registrar();  // Stop()

  // The worker group this rank belongs to (default 0); call before Start.
  void SetGroup(int group) { group_ = group; }
  void Start();
  void Stop();
  // The session this worker is registered in; empty before the first
  // registration.
  std::string session() const;

 private:
  void Run();

  const std::string store_host_;
  const int store_port_;
  const int rank_;
  int group_ = 0;
  const std::string address_;
  const std::function<void(const std::string&)> log_;
  const absl::Duration interval_;
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  mutable absl::Mutex mu_;
  std::string session_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_SERVICE_REGISTRAR_H_
