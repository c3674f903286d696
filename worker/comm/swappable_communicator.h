// SwappableCommunicator: a Communicator whose implementation is replaced at
// every group epoch, so the engine (which holds a Communicator& for its whole
// life, together with the weights) can join a new group without reloading.
// Before the first Set, and after Clear, every collective of a multi-rank
// world fails with FAILED_PRECONDITION ("not in a group epoch").
//
// Thread model: collectives and Set/Clear are called by one thread at a time
// (the worker serializes steps and joins); Abort may come from any thread and
// reaches the implementation current at that moment.
//
//   SwappableCommunicator comm(rank, world_size, "gloo");
//   auto engine = Engine::Create(model, comm, options);     // no collectives yet
//   comm.Set(CreateHostCommunicator(store, rank, world, epoch_options).value());
//   TPS_RETURN_IF_ERROR(engine->CheckGroup());               // first collective
#ifndef TPSERVE_WORKER_COMM_SWAPPABLE_COMMUNICATOR_H_
#define TPSERVE_WORKER_COMM_SWAPPABLE_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "worker/comm/communicator.h"

namespace tpserve {

class SwappableCommunicator final : public Communicator {
 public:
  // `backend` is what backend() reports ("gloo", "shm", "nccl") before and
  // after any Set; implementations set later must be of that backend.
  SwappableCommunicator(int rank, int world_size, std::string backend);

  // Installs `impl` (same rank and world size), destroying the previous one.
  void Set(std::unique_ptr<Communicator> impl);
  // Aborts and destroys the current implementation.
  void Clear();
  // True while an implementation is installed.
  bool joined() const;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend() const override { return backend_; }
  [[nodiscard]] absl::Status AllReduceSum(void* buf, size_t count, CommDType dtype,
                                          const CollectiveOptions& opts) override;
  [[nodiscard]] absl::Status AllGather(const void* send, void* recv, size_t count,
                                       CommDType dtype, const CollectiveOptions& opts) override;
  [[nodiscard]] absl::Status Broadcast(void* buf, size_t count, CommDType dtype, int root,
                                       const CollectiveOptions& opts) override;
  [[nodiscard]] absl::Status Barrier(const CollectiveOptions& opts) override;
  [[nodiscard]] absl::Status Synchronize(void* stream) override;
  void Abort() override;

 private:
  // The current implementation, or an error when there is none.
  absl::StatusOr<std::shared_ptr<Communicator>> Current() const;

  const int rank_;
  const int world_size_;
  const std::string backend_;
  mutable absl::Mutex mu_;
  std::shared_ptr<Communicator> impl_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_COMM_SWAPPABLE_COMMUNICATOR_H_
