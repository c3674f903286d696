#include "worker/comm/swappable_communicator.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status.h"

namespace tpserve {

SwappableCommunicator::SwappableCommunicator(int rank, int world_size, std::string backend)
    : rank_(rank), world_size_(world_size), backend_(std::move(backend)) {}

void SwappableCommunicator::Set(std::unique_ptr<Communicator> impl) {
  TPS_CHECK(impl != nullptr);
  TPS_CHECK_EQ(impl->rank(), rank_);
  TPS_CHECK_EQ(impl->world_size(), world_size_);
  std::shared_ptr<Communicator> old;
  {
    absl::MutexLock lock(&mu_);
    old = std::move(impl_);
    impl_ = std::move(impl);
  }
  if (old != nullptr) old->Abort();
}

void SwappableCommunicator::Clear() {
  std::shared_ptr<Communicator> old;
  {
    absl::MutexLock lock(&mu_);
    old = std::move(impl_);
  }
  if (old != nullptr) old->Abort();
}

bool SwappableCommunicator::joined() const {
  absl::MutexLock lock(&mu_);
  return impl_ != nullptr;
}

absl::StatusOr<std::shared_ptr<Communicator>> SwappableCommunicator::Current() const {
  absl::MutexLock lock(&mu_);
  if (impl_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "rank ", rank_, " is not in a group epoch (its communicator was dropped or never built)"));
  }
  return impl_;
}

absl::Status SwappableCommunicator::AllReduceSum(void* buf, size_t count, CommDType dtype,
                                                 const CollectiveOptions& opts) {
  TPS_ASSIGN_OR_RETURN(std::shared_ptr<Communicator> c, Current());
  return c->AllReduceSum(buf, count, dtype, opts);
}

absl::Status SwappableCommunicator::AllGather(const void* send, void* recv, size_t count,
                                              CommDType dtype, const CollectiveOptions& opts) {
  TPS_ASSIGN_OR_RETURN(std::shared_ptr<Communicator> c, Current());
  return c->AllGather(send, recv, count, dtype, opts);
}

absl::Status SwappableCommunicator::Broadcast(void* buf, size_t count, CommDType dtype, int root,
                                              const CollectiveOptions& opts) {
  TPS_ASSIGN_OR_RETURN(std::shared_ptr<Communicator> c, Current());
  return c->Broadcast(buf, count, dtype, root, opts);
}

absl::Status SwappableCommunicator::Barrier(const CollectiveOptions& opts) {
  TPS_ASSIGN_OR_RETURN(std::shared_ptr<Communicator> c, Current());
  return c->Barrier(opts);
}

absl::Status SwappableCommunicator::Synchronize(void* stream) {
  TPS_ASSIGN_OR_RETURN(std::shared_ptr<Communicator> c, Current());
  return c->Synchronize(stream);
}

void SwappableCommunicator::Abort() {
  std::shared_ptr<Communicator> c;
  {
    absl::MutexLock lock(&mu_);
    c = impl_;
  }
  if (c != nullptr) c->Abort();
}

}  // namespace tpserve
