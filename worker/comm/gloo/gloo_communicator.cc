#include "worker/comm/gloo/gloo_communicator.h"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status.h"
#include "formats/dtype.h"
#include "gloo/allgather.h"
#include "gloo/allreduce.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/common/error.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/store.h"
#include "gloo/transport/tcp/device.h"
#include "gloo/transport/unbound_buffer.h"
#include "worker/comm/sticky_error.h"

namespace tpserve {
namespace {

// Adapts the caller's KvStore to Gloo's rendezvous Store. Gloo reports store
// failures by exception; CreateGlooCommunicator catches them.
class GlooStoreAdapter : public gloo::rendezvous::Store {
 public:
  GlooStoreAdapter(KvStore& store, std::string prefix, absl::Duration timeout)
      : store_(store), prefix_(std::move(prefix)), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    absl::Status s = store_.Set(prefix_ + key, std::string(data.begin(), data.end()));
    if (!s.ok()) throw gloo::IoException(std::string(s.message()));
  }
  std::vector<char> get(const std::string& key) override {
    absl::StatusOr<std::string> v = store_.Get(prefix_ + key, timeout_);
    if (!v.ok()) throw gloo::IoException(std::string(v.status().message()));
    return std::vector<char>(v->begin(), v->end());
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, kDefaultTimeout); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds&) override {
    for (const std::string& k : keys) get(k);
  }

 private:
  KvStore& store_;
  std::string prefix_;
  absl::Duration timeout_;
};

std::chrono::milliseconds ToMs(absl::Duration d) {
  return std::chrono::milliseconds(std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));
}

template <typename T>
void SumInto(void* out, const void* a, const void* b, size_t n) {
  T* o = static_cast<T*>(out);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  for (size_t i = 0; i < n; ++i) o[i] = x[i] + y[i];
}

void SumBf16(void* out, const void* a, const void* b, size_t n) {
  uint16_t* o = static_cast<uint16_t*>(out);
  const uint16_t* x = static_cast<const uint16_t*>(a);
  const uint16_t* y = static_cast<const uint16_t*>(b);
  for (size_t i = 0; i < n; ++i) o[i] = F32ToBF16(BF16ToF32(x[i]) + BF16ToF32(y[i]));
}

class GlooCommunicator : public Communicator {
 public:
  GlooCommunicator(int rank, int world_size, absl::Duration timeout,
                   std::shared_ptr<gloo::Context> context)
      : rank_(rank), world_size_(world_size), timeout_(timeout), context_(std::move(context)) {}

  ~GlooCommunicator() override = default;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string backend() const override { return "gloo"; }

  absl::Status AllReduceSum(void* buf, size_t count, CommDType dtype,
                            const CollectiveOptions& opts) override {
    gloo::AllreduceOptions::Func fn;
    switch (dtype) {
      case CommDType::kF32:
        fn = SumInto<float>;
        break;
      case CommDType::kI32:
        fn = SumInto<int32_t>;
        break;
      case CommDType::kI64:
        fn = SumInto<int64_t>;
        break;
      case CommDType::kU8:
        fn = SumInto<uint8_t>;
        break;
      case CommDType::kBF16:
        fn = SumBf16;
        break;
      case CommDType::kF16:
        return absl::UnimplementedError("gloo all-reduce: f16 sum is not supported");
    }
    if (world_size_ == 1 || count == 0) return error_.Check();
    const size_t bytes = count * CommDTypeSize(dtype);
    elem_size_ = CommDTypeSize(dtype);
    if (bytes * world_size_ <= kDirectAllReduceMaxBytes) {
      return Run("all-reduce", opts,
                 [&](std::chrono::milliseconds t) { DirectAllReduce(buf, bytes, fn, t); });
    }
    return Run("all-reduce", opts, [&](std::chrono::milliseconds t) {
      gloo::AllreduceOptions o(context_);
      SetOutput(o, count, dtype, buf);
      o.setReduceFunction(fn);
      o.setTimeout(t);
      gloo::allreduce(o);
    });
  }

  absl::Status AllGather(const void* send, void* recv, size_t count, CommDType dtype,
                         const CollectiveOptions& opts) override {
    const size_t bytes = count * CommDTypeSize(dtype);
    char* mine = static_cast<char*>(recv) + rank_ * bytes;
    if (send != mine && bytes > 0) std::memmove(mine, send, bytes);
    if (world_size_ == 1 || count == 0) return error_.Check();
    return Run("all-gather", opts, [&](std::chrono::milliseconds t) {
      gloo::AllgatherOptions o(context_);
      o.setOutput(static_cast<char*>(recv), bytes * world_size_);
      o.setTimeout(t);
      gloo::allgather(o);
    });
  }

  absl::Status Broadcast(void* buf, size_t count, CommDType dtype, int root,
                         const CollectiveOptions& opts) override {
    if (root < 0 || root >= world_size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("broadcast root ", root, " outside world of ", world_size_));
    }
    if (world_size_ == 1 || count == 0) return error_.Check();
    return Run("broadcast", opts, [&](std::chrono::milliseconds t) {
      gloo::BroadcastOptions o(context_);
      o.setOutput(static_cast<char*>(buf), count * CommDTypeSize(dtype));
      o.setRoot(root);
      o.setTimeout(t);
      gloo::broadcast(o);
    });
  }

  absl::Status Barrier(const CollectiveOptions& opts) override {
    if (world_size_ == 1) return error_.Check();
    return Run("barrier", opts, [&](std::chrono::milliseconds t) {
      gloo::BarrierOptions o(context_);
      o.setTimeout(t);
      gloo::barrier(o);
    });
  }

  absl::Status Synchronize(void*) override { return error_.Check(); }

  void Abort() override {
    if (aborted_.exchange(true)) return;
    {
      absl::MutexLock lock(&inflight_mu_);
      if (inflight_in_ != nullptr) inflight_in_->abortWaitRecv();
      if (inflight_out_ != nullptr) inflight_out_->abortWaitSend();
    }
    error_.Record(absl::CancelledError("communicator aborted"));
    if (context_ != nullptr) {
      try {
        context_->closeConnections();
      } catch (const std::exception&) {
        // Closing a pair that already failed may throw; the state is final.
      }
    }
  }

 private:
  // A typed output (the type only fixes the element size) so the ring splits
  // on element boundaries; the reduce function knows the real type.
  static void SetOutput(gloo::AllreduceOptions& o, size_t count, CommDType dtype, void* buf) {
    switch (CommDTypeSize(dtype)) {
      case 8:
        o.setOutput(static_cast<int64_t*>(buf), count);
        break;
      case 4:
        o.setOutput(static_cast<float*>(buf), count);
        break;
      case 2:
        o.setOutput(static_cast<uint16_t*>(buf), count);
        break;
      default:
        o.setOutput(static_cast<uint8_t*>(buf), count);
        break;
    }
  }

  // Registers the buffers of a direct all-reduce so Abort() can wake it.
  class InFlight {
   public:
    InFlight(GlooCommunicator& c, gloo::transport::UnboundBuffer* in,
             gloo::transport::UnboundBuffer* out)
        : c_(c) {
      absl::MutexLock lock(&c_.inflight_mu_);
      c_.inflight_in_ = in;
      c_.inflight_out_ = out;
    }
    ~InFlight() {
      absl::MutexLock lock(&c_.inflight_mu_);
      c_.inflight_in_ = nullptr;
      c_.inflight_out_ = nullptr;
    }

   private:
    GlooCommunicator& c_;
  };

  // Small buffers (decode steps): every rank sends its whole buffer to every
  // other rank in one round and sums all of them in rank order. One message
  // latency instead of the ring's 2 * (world - 1) sequential steps, and the
  // same bit-exact result on every rank.
  static constexpr size_t kDirectAllReduceMaxBytes = 256 << 10;

  void DirectAllReduce(void* buf, size_t bytes, const gloo::AllreduceOptions::Func& fn,
                       std::chrono::milliseconds timeout) {
    scratch_.resize(bytes * world_size_);
    const uint64_t slot = context_->nextSlot();
    auto out = context_->createUnboundBuffer(buf, bytes);
    auto in = context_->createUnboundBuffer(scratch_.data(), scratch_.size());
    // Abort() from another thread releases the waits below.
    InFlight guard(*this, in.get(), out.get());
    if (aborted_) throw gloo::IoException("communicator aborted");
    for (int r = 0; r < world_size_; ++r) {
      if (r == rank_) continue;
      in->recv(r, slot, r * bytes, bytes);
      out->send(r, slot);
    }
    for (int r = 0; r < world_size_ - 1; ++r) {
      if (!in->waitRecv(timeout)) throw gloo::IoException("all-reduce receive aborted");
    }
    for (int r = 0; r < world_size_ - 1; ++r) {
      if (!out->waitSend(timeout)) throw gloo::IoException("all-reduce send aborted");
    }
    std::memcpy(scratch_.data() + rank_ * bytes, buf, bytes);
    const size_t count = bytes / elem_size_;
    std::memcpy(buf, scratch_.data(), bytes);
    for (int r = 1; r < world_size_; ++r) fn(buf, buf, scratch_.data() + r * bytes, count);
  }

  template <typename Fn>
  absl::Status Run(const char* what, const CollectiveOptions& opts, Fn&& fn) {
    TPS_RETURN_IF_ERROR(error_.Check());
    absl::Duration timeout = opts.timeout > absl::ZeroDuration() ? opts.timeout : timeout_;
    absl::Status status;
    const absl::Time start = absl::Now();
    try {
      fn(ToMs(timeout));
      return absl::OkStatus();
    } catch (const std::exception& e) {
      std::string msg =
          absl::StrCat("gloo ", what, " on rank ", rank_, "/", world_size_, ": ", e.what());
      if (aborted_) {
        status = absl::CancelledError(msg);
      } else if (absl::Now() - start >= timeout) {
        // Gloo reports a timeout as an IoException like any other I/O error;
        // the elapsed time tells them apart.
        status = absl::DeadlineExceededError(absl::StrCat(msg, " (no answer from a peer within ",
                                                          absl::FormatDuration(timeout), ")"));
      } else {
        status = absl::UnavailableError(msg);
      }
    }
    error_.Record(status);
    return status;
  }

  const int rank_;
  const int world_size_;
  const absl::Duration timeout_;
  std::shared_ptr<gloo::Context> context_;
  std::atomic<bool> aborted_{false};
  StickyError error_;
  std::vector<char> scratch_;  // direct all-reduce receive area
  absl::Mutex inflight_mu_;
  gloo::transport::UnboundBuffer* inflight_in_ ABSL_GUARDED_BY(inflight_mu_) = nullptr;
  gloo::transport::UnboundBuffer* inflight_out_ ABSL_GUARDED_BY(inflight_mu_) = nullptr;
  size_t elem_size_ = 4;  // element size of the all-reduce in flight
};

// Every rank publishes its world size; all must agree before Gloo connects.
absl::Status CheckMembership(KvStore& store, int rank, int world_size, const GlooOptions& options) {
  const std::string base = absl::StrCat(options.prefix, "/member/");
  TPS_RETURN_IF_ERROR(store.Set(absl::StrCat(base, rank), absl::StrCat(world_size)));
  for (int r = 0; r < world_size; ++r) {
    absl::StatusOr<std::string> v = store.Get(absl::StrCat(base, r), options.rendezvous_timeout);
    if (!v.ok()) {
      return Annotate(v.status(), absl::StrCat("rank ", rank, " waiting for rank ", r, " to join"));
    }
    int other = 0;
    if (!absl::SimpleAtoi(*v, &other) || other != world_size) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", r, " was started with world size ",
                                                     *v, " but rank ", rank, " with ", world_size));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateGlooCommunicator(KvStore& store, int rank,
                                                                     int world_size,
                                                                     const GlooOptions& options) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " is outside a world of size ", world_size));
  }
  if (world_size == 1) {
    return std::unique_ptr<Communicator>(new GlooCommunicator(0, 1, options.timeout, nullptr));
  }
  // Gloo writes to its sockets without MSG_NOSIGNAL: a peer that dies while
  // this rank sends would kill this process with SIGPIPE instead of turning
  // into an error. Ignore the signal process-wide (as servers do).
  signal(SIGPIPE, SIG_IGN);
  TPS_RETURN_IF_ERROR(CheckMembership(store, rank, world_size, options));
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = options.hostname;
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(rank, world_size);
    context->setTimeout(ToMs(options.rendezvous_timeout));
    GlooStoreAdapter adapter(store, options.prefix + "/gloo/", options.rendezvous_timeout);
    context->connectFullMesh(adapter, device);
    context->setTimeout(ToMs(options.timeout));
    return std::unique_ptr<Communicator>(
        new GlooCommunicator(rank, world_size, options.timeout, std::move(context)));
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("gloo rendezvous of rank ", rank, "/", world_size, ": ", e.what()));
  }
}

}  // namespace tpserve
