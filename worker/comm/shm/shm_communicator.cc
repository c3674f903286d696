#include "worker/comm/shm/shm_communicator.h"

#include <fcntl.h>
#include <immintrin.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/status.h"
#include "formats/dtype.h"
#include "worker/comm/sticky_error.h"

namespace tpserve {
namespace {

constexpr int kMaxWorld = 64;
constexpr size_t kHeaderBytes = 4096;

// Lives at the start of the segment; lock-free 32-bit atomics work across
// processes.
struct SegmentHeader {
  alignas(64) std::atomic<uint32_t> arrived;
  alignas(64) std::atomic<uint32_t> generation;
  alignas(64) std::atomic<uint32_t> failed;  // 0 ok, 1 error, 2 aborted
  std::atomic<int32_t> failed_rank;
  int32_t world;
  uint64_t slot_bytes;
  std::atomic<int32_t> pids[kMaxWorld];
};
static_assert(sizeof(SegmentHeader) <= kHeaderBytes, "header fits its page");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "cross-process atomics");

// True when `pid` has exited (gone, or a zombie nobody reaped yet).
bool ProcessGone(int32_t pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno == ESRCH) return true;
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE* f = fopen(path, "r");
  if (f == nullptr) return true;
  char buf[256];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char* close_paren = strrchr(buf, ')');
  return close_paren != nullptr && (close_paren[2] == 'Z' || close_paren[2] == 'X');
}

template <typename T>
void SumSlots(T* out, const uint8_t* const* slots, int world, size_t n) {
  const T* s0 = reinterpret_cast<const T*>(slots[0]);
  for (size_t i = 0; i < n; ++i) out[i] = s0[i];
  for (int r = 1; r < world; ++r) {
    const T* s = reinterpret_cast<const T*>(slots[r]);
    for (size_t i = 0; i < n; ++i) out[i] += s[i];
  }
}

class ShmCommunicator : public Communicator {
 public:
  ShmCommunicator(int rank, int world, absl::Duration timeout, uint8_t* base, size_t bytes)
      : rank_(rank), world_(world), timeout_(timeout), base_(base), bytes_(bytes) {
    hdr_ = reinterpret_cast<SegmentHeader*>(base_);
    slot_bytes_ = hdr_->slot_bytes;
    for (int r = 0; r < world_; ++r) slots_[r] = base_ + kHeaderBytes + r * slot_bytes_;
  }
  ~ShmCommunicator() override { munmap(base_, bytes_); }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return "shm"; }

  // Rendezvous barrier (longer timeout), used once after every rank mapped.
  absl::Status Join(absl::Duration timeout) {
    return Run("rendezvous", timeout, [&](absl::Time deadline) { return Wait(deadline); });
  }

  absl::Status AllReduceSum(void* buf, size_t count, CommDType dtype,
                            const CollectiveOptions& opts) override {
    if (dtype == CommDType::kF16) {
      return absl::UnimplementedError("shm all-reduce: f16 sum is not supported");
    }
    const size_t esize = CommDTypeSize(dtype);
    return Run("all-reduce", opts.timeout, [&](absl::Time deadline) -> absl::Status {
      const size_t per_chunk = slot_bytes_ / esize;
      uint8_t* p = static_cast<uint8_t*>(buf);
      for (size_t off = 0; off < count; off += per_chunk) {
        const size_t n = std::min(per_chunk, count - off);
        std::memcpy(slots_[rank_], p + off * esize, n * esize);
        TPS_RETURN_IF_ERROR(Wait(deadline));
        const uint8_t* src[kMaxWorld];
        for (int r = 0; r < world_; ++r) src[r] = slots_[r];
        uint8_t* out = p + off * esize;
        switch (dtype) {
          case CommDType::kF32:
            SumSlots(reinterpret_cast<float*>(out), src, world_, n);
            break;
          case CommDType::kI32:
            SumSlots(reinterpret_cast<int32_t*>(out), src, world_, n);
            break;
          case CommDType::kI64:
            SumSlots(reinterpret_cast<int64_t*>(out), src, world_, n);
            break;
          case CommDType::kU8:
            SumSlots(out, src, world_, n);
            break;
          case CommDType::kBF16: {
            uint16_t* o = reinterpret_cast<uint16_t*>(out);
            for (size_t i = 0; i < n; ++i) {
              float acc = 0;
              for (int r = 0; r < world_; ++r)
                acc += BF16ToF32(reinterpret_cast<const uint16_t*>(src[r])[i]);
              o[i] = F32ToBF16(acc);
            }
            break;
          }
          case CommDType::kF16:
            break;
        }
        TPS_RETURN_IF_ERROR(Wait(deadline));  // slots free for the next chunk
      }
      return absl::OkStatus();
    });
  }

  absl::Status AllGather(const void* send, void* recv, size_t count, CommDType dtype,
                         const CollectiveOptions& opts) override {
    const size_t esize = CommDTypeSize(dtype);
    return Run("all-gather", opts.timeout, [&](absl::Time deadline) -> absl::Status {
      const size_t per_chunk = slot_bytes_ / esize;
      const uint8_t* s = static_cast<const uint8_t*>(send);
      uint8_t* d = static_cast<uint8_t*>(recv);
      for (size_t off = 0; off < count; off += per_chunk) {
        const size_t n = std::min(per_chunk, count - off);
        std::memcpy(slots_[rank_], s + off * esize, n * esize);
        TPS_RETURN_IF_ERROR(Wait(deadline));
        for (int r = 0; r < world_; ++r) {
          std::memcpy(d + (r * count + off) * esize, slots_[r], n * esize);
        }
        TPS_RETURN_IF_ERROR(Wait(deadline));
      }
      return absl::OkStatus();
    });
  }

  absl::Status Broadcast(void* buf, size_t count, CommDType dtype, int root,
                         const CollectiveOptions& opts) override {
    if (root < 0 || root >= world_) {
      return absl::InvalidArgumentError(
          absl::StrCat("broadcast root ", root, " outside world of ", world_));
    }
    const size_t esize = CommDTypeSize(dtype);
    return Run("broadcast", opts.timeout, [&](absl::Time deadline) -> absl::Status {
      const size_t per_chunk = slot_bytes_ / esize;
      uint8_t* p = static_cast<uint8_t*>(buf);
      for (size_t off = 0; off < count; off += per_chunk) {
        const size_t n = std::min(per_chunk, count - off);
        if (rank_ == root) std::memcpy(slots_[root], p + off * esize, n * esize);
        TPS_RETURN_IF_ERROR(Wait(deadline));
        if (rank_ != root) std::memcpy(p + off * esize, slots_[root], n * esize);
        TPS_RETURN_IF_ERROR(Wait(deadline));
      }
      return absl::OkStatus();
    });
  }

  absl::Status Barrier(const CollectiveOptions& opts) override {
    return Run("barrier", opts.timeout, [&](absl::Time deadline) { return Wait(deadline); });
  }

  absl::Status Synchronize(void*) override { return error_.Check(); }

  void Abort() override {
    uint32_t expected = 0;
    hdr_->failed.compare_exchange_strong(expected, 2);
    hdr_->failed_rank.store(rank_);
    error_.Record(absl::CancelledError("communicator aborted"));
  }

 private:
  template <typename Fn>
  absl::Status Run(const char* what, absl::Duration timeout, Fn&& fn) {
    TPS_RETURN_IF_ERROR(error_.Check());
    if (timeout <= absl::ZeroDuration()) timeout = timeout_;
    absl::Status s = fn(absl::Now() + timeout);
    if (s.ok()) return s;
    s = Annotate(s, absl::StrCat("shm ", what, " on rank ", rank_, "/", world_));
    uint32_t expected = 0;
    if (hdr_->failed.compare_exchange_strong(expected, 1)) hdr_->failed_rank.store(rank_);
    error_.Record(s);
    return s;
  }

  // Sense-counting barrier over the segment: the last rank to arrive bumps
  // the generation. Spins ~4k pauses (a few microseconds), then yields.
  absl::Status Wait(absl::Time deadline) {
    const uint32_t gen = hdr_->generation.load(std::memory_order_acquire);
    if (hdr_->arrived.fetch_add(1, std::memory_order_acq_rel) + 1 ==
        static_cast<uint32_t>(world_)) {
      hdr_->arrived.store(0, std::memory_order_relaxed);
      hdr_->generation.fetch_add(1, std::memory_order_release);
      return absl::OkStatus();
    }
    for (uint64_t i = 0;; ++i) {
      if (hdr_->generation.load(std::memory_order_acquire) != gen) return absl::OkStatus();
      if (uint32_t f = hdr_->failed.load(std::memory_order_acquire);
          f != 0 && hdr_->generation.load(std::memory_order_acquire) == gen) {
        return absl::UnavailableError(absl::StrCat("rank ", hdr_->failed_rank.load(),
                                                   f == 2 ? " aborted" : " failed",
                                                   "; the group is broken"));
      }
      if (i < 4096) {
        _mm_pause();
        continue;
      }
      sched_yield();
      if ((i & 255) == 0) {
        if (absl::Now() > deadline) {
          return absl::DeadlineExceededError("no answer from a peer within the timeout");
        }
        for (int r = 0; r < world_; ++r) {
          if (r != rank_ && ProcessGone(hdr_->pids[r].load())) {
            // It may have left after completing this very barrier.
            if (hdr_->generation.load(std::memory_order_acquire) != gen) return absl::OkStatus();
            return absl::UnavailableError(
                absl::StrCat("peer rank ", r, " (pid ", hdr_->pids[r].load(), ") exited"));
          }
        }
      }
    }
  }

  const int rank_;
  const int world_;
  const absl::Duration timeout_;
  uint8_t* base_;
  size_t bytes_;
  SegmentHeader* hdr_;
  size_t slot_bytes_ = 0;
  uint8_t* slots_[kMaxWorld] = {};
  StickyError error_;
};

std::string HostName() {
  char buf[256] = {};
  gethostname(buf, sizeof(buf) - 1);
  return buf;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateShmCommunicator(KvStore& store, int rank,
                                                                    int world_size,
                                                                    const ShmOptions& options) {
  if (world_size < 1 || world_size > kMaxWorld || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " is outside a world of size ", world_size));
  }
  const size_t slot = (std::max<size_t>(options.slot_bytes, 4096) + 63) / 64 * 64;
  const size_t bytes = kHeaderBytes + slot * world_size;
  const std::string key = options.prefix + "/segment";
  std::string name;
  int fd = -1;
  if (rank == 0) {
    std::random_device rd;
    name = absl::StrCat("/tpserve-shm-", getpid(), "-", rd());
    fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
      if (fd >= 0) close(fd), shm_unlink(name.c_str());
      return absl::UnavailableError(
          absl::StrCat("creating shared memory ", name, ": ", strerror(errno)));
    }
  } else {
    absl::StatusOr<std::string> v = store.Get(key, options.rendezvous_timeout);
    if (!v.ok()) return Annotate(v.status(), absl::StrCat("rank ", rank, " waiting for rank 0"));
    std::vector<std::string> parts = absl::StrSplit(*v, '\n');
    if (parts.size() != 3) return absl::InvalidArgumentError("malformed shm rendezvous record");
    name = parts[0];
    if (parts[1] != HostName()) {
      return absl::FailedPreconditionError(
          absl::StrCat("shm communicator needs all ranks on one host: rank 0 is on ", parts[1],
                       ", rank ", rank, " on ", HostName()));
    }
    fd = shm_open(name.c_str(), O_RDWR, 0600);
    if (fd < 0)
      return absl::UnavailableError(absl::StrCat("opening ", name, ": ", strerror(errno)));
  }
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) {
    if (rank == 0) shm_unlink(name.c_str());
    return absl::UnavailableError(absl::StrCat("mapping ", name, ": ", strerror(errno)));
  }
  auto* hdr = reinterpret_cast<SegmentHeader*>(base);
  if (rank == 0) {
    new (hdr) SegmentHeader();
    hdr->world = world_size;
    hdr->slot_bytes = slot;
    hdr->pids[0].store(getpid());
    absl::Status s = store.Set(key, absl::StrCat(name, "\n", HostName(), "\n", world_size));
    if (!s.ok()) {
      munmap(base, bytes);
      shm_unlink(name.c_str());
      return s;
    }
  } else {
    if (hdr->world != world_size || hdr->slot_bytes != slot) {
      // Tell rank 0 (and everyone) instead of leaving it waiting.
      hdr->failed_rank.store(rank);
      hdr->failed.store(1);
      const int other = hdr->world;
      munmap(base, bytes);
      return absl::InvalidArgumentError(absl::StrCat("rank 0 was started with world size ", other,
                                                     " but rank ", rank, " with ", world_size,
                                                     " (or a different slot size)"));
    }
    hdr->pids[rank].store(getpid());
  }
  auto comm = std::make_unique<ShmCommunicator>(rank, world_size, options.timeout,
                                                static_cast<uint8_t*>(base), bytes);
  absl::Status joined = comm->Join(options.rendezvous_timeout);
  if (rank == 0) shm_unlink(name.c_str());  // every rank has mapped it (or failed)
  if (!joined.ok()) return joined;
  return std::unique_ptr<Communicator>(std::move(comm));
}

}  // namespace tpserve
