// NCCL in the CUDA emulator (include/nccl.h): the ranks of a communicator are
// threads of this process. Each collective is queued on its stream like an
// NCCL kernel (streams.h) and, when its stream runs, deposits this rank's
// input and waits, not-ready, until every rank's input is there; then it
// writes this rank's output (sums in rank order, so every rank gets the same
// bits). Non-blocking communicators report ncclInProgress as NCCL does while
// the init waits for every rank and while the first collective waits for
// every rank to issue it (connection setup). ncclCommAbort ends the rank's
// queued collectives and makes its peers' communicators report
// ncclRemoteError; a peer that never issues a collective leaves the others
// waiting, as on the hardware. Collectives pair across ranks by their place
// in each rank's program order: an eager call's is its call, a captured
// one's each launch of its graph (emu.h, StreamWorkMaker), so graph replays
// pair with the peers' replays.
#include <nccl.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct Slot {
  std::vector<std::vector<unsigned char>> inputs;  // per rank, once deposited
  int deposited = 0;
  int consumed = 0;
};

struct Group {
  std::mutex mu;
  std::condition_variable joined_cv;
  int world = 0;
  int joined = 0;
  int issued_first = 0;  // ranks that issued their first collective
  bool peer_aborted = false;
  std::map<uint64_t, Slot> slots;  // by collective index
};

struct RankState {
  std::atomic<bool> aborted{false};
  // Collectives of this rank so far, in program order: an eager call takes
  // its index when issued, a captured one at each launch of its graph.
  std::atomic<uint64_t> sequenced{0};
};

std::mutex g_registry_mu;
std::map<std::string, std::weak_ptr<Group>>& Registry() {
  static auto* m = new std::map<std::string, std::weak_ptr<Group>>();
  return *m;
}

size_t DTypeBytes(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    default:
      return 8;
  }
}

template <typename T>
void SumInto(void* out, const std::vector<std::vector<unsigned char>>& in, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    T acc{};
    for (const auto& r : in) {
      T v;
      std::memcpy(&v, r.data() + i * sizeof(T), sizeof(T));
      acc = static_cast<T>(acc + v);
    }
    std::memcpy(static_cast<unsigned char*>(out) + i * sizeof(T), &acc, sizeof(T));
  }
}

void SumBf16(void* out, const std::vector<std::vector<unsigned char>>& in, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    float acc = 0.0f;
    for (const auto& r : in) {
      uint16_t h;
      std::memcpy(&h, r.data() + i * 2, 2);
      const uint32_t bits = static_cast<uint32_t>(h) << 16;
      float v;
      std::memcpy(&v, &bits, 4);
      acc += v;
    }
    uint32_t bits;
    std::memcpy(&bits, &acc, 4);
    const uint16_t h = static_cast<uint16_t>((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
    std::memcpy(static_cast<unsigned char*>(out) + i * 2, &h, 2);
  }
}

enum class Kind { kAllReduce, kAllGather, kBroadcast };

}  // namespace

struct tpserve_emu_nccl_comm {
  std::shared_ptr<Group> group;
  std::shared_ptr<RankState> state;
  int rank = 0;
  bool blocking = true;
  uint64_t issued = 0;
  bool first_pending = false;  // non-blocking: first collective not yet issued by all
};

namespace {

// One collective as a rank issued it. Run(index) is one execution of it as
// the rank's index-th collective: not ready until every rank's input for
// that index is there.
struct CollectiveOp {
  Kind kind;
  const void* send;
  void* recv;
  size_t count;
  size_t bytes;
  ncclDataType_t dtype;
  int root;
  int rank;
  std::shared_ptr<Group> group;
  std::shared_ptr<RankState> state;

  bool Run(uint64_t index) const {
    std::lock_guard<std::mutex> lock(group->mu);
    if (state->aborted) return true;  // an aborted communicator's kernels exit
    Slot& slot = group->slots[index];
    if (slot.inputs.empty()) slot.inputs.resize(group->world);
    if (slot.inputs[rank].empty()) {
      // The input is read when the collective runs on its stream.
      const auto* p = static_cast<const unsigned char*>(send);
      slot.inputs[rank].assign(p, p + bytes);
      if (bytes == 0) slot.inputs[rank].push_back(0);
      ++slot.deposited;
    }
    if (slot.deposited < group->world) return false;
    switch (kind) {
      case Kind::kAllReduce:
        switch (dtype) {
          case ncclFloat32:
            SumInto<float>(recv, slot.inputs, count);
            break;
          case ncclFloat64:
            SumInto<double>(recv, slot.inputs, count);
            break;
          case ncclInt32:
            SumInto<int32_t>(recv, slot.inputs, count);
            break;
          case ncclUint32:
            SumInto<uint32_t>(recv, slot.inputs, count);
            break;
          case ncclInt64:
            SumInto<int64_t>(recv, slot.inputs, count);
            break;
          case ncclUint64:
            SumInto<uint64_t>(recv, slot.inputs, count);
            break;
          case ncclInt8:
            SumInto<int8_t>(recv, slot.inputs, count);
            break;
          case ncclUint8:
            SumInto<uint8_t>(recv, slot.inputs, count);
            break;
          case ncclBfloat16:
            SumBf16(recv, slot.inputs, count);
            break;
          default:
            break;
        }
        break;
      case Kind::kAllGather:
        for (int r = 0; r < group->world; ++r) {
          std::memmove(static_cast<unsigned char*>(recv) + r * bytes, slot.inputs[r].data(), bytes);
        }
        break;
      case Kind::kBroadcast:
        std::memmove(recv, slot.inputs[root].data(), bytes);
        break;
    }
    if (++slot.consumed == group->world) group->slots.erase(index);
    return true;
  }
};

ncclResult_t Collective(Kind kind, const void* send, void* recv, size_t count, ncclDataType_t dtype,
                        int root, ncclComm_t comm, cudaStream_t stream) {
  if (comm == nullptr) return ncclInvalidArgument;
  if (dtype == ncclFloat16) return ncclInvalidArgument;  // not needed by tpserve
  const bool first = ++comm->issued == 1;
  if (first) {
    std::lock_guard<std::mutex> lock(comm->group->mu);
    ++comm->group->issued_first;
    comm->first_pending = !comm->blocking;
  }
  const CollectiveOp op{kind,  send, recv,       count,       count * DTypeBytes(dtype),
                        dtype, root, comm->rank, comm->group, comm->state};
  // Each run takes the rank's next index when it is made: at the call, or
  // at each launch of a graph that captured it.
  const int err = ::tpserve_emu::EnqueueHostWork(stream, [op]() -> ::tpserve_emu::StreamWork {
    const uint64_t index = ++op.state->sequenced;
    return [op, index] { return op.Run(index); };
  });
  if (err != cudaSuccess) return ncclUnhandledCudaError;
  return first && !comm->blocking ? ncclInProgress : ncclSuccess;
}

void Leave(ncclComm_t comm, bool abort) {
  {
    std::lock_guard<std::mutex> lock(comm->group->mu);
    comm->state->aborted = true;
    if (abort) comm->group->peer_aborted = true;
  }
  delete comm;
}

}  // namespace

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  static std::atomic<uint64_t> counter{0};
  std::memset(id->internal, 0, sizeof(id->internal));
  std::snprintf(id->internal, sizeof(id->internal), "tpserve-emu-nccl-%p-%llu",
                static_cast<void*>(&counter), static_cast<unsigned long long>(++counter));
  return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t* out, int nranks, ncclUniqueId id, int rank,
                                    ncclConfig_t* config) {
  if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  const std::string key(id.internal, strnlen(id.internal, sizeof(id.internal)));
  std::shared_ptr<Group> group;
  {
    std::lock_guard<std::mutex> lock(g_registry_mu);
    group = Registry()[key].lock();
    if (group == nullptr) {
      group = std::make_shared<Group>();
      group->world = nranks;
      Registry()[key] = group;
    }
  }
  if (group->world != nranks) return ncclInvalidArgument;
  auto* comm = new tpserve_emu_nccl_comm();
  comm->group = group;
  comm->state = std::make_shared<RankState>();
  comm->rank = rank;
  comm->blocking = config == nullptr || config->blocking != 0;
  {
    std::unique_lock<std::mutex> lock(group->mu);
    ++group->joined;
    group->joined_cv.notify_all();
    *out = comm;
    if (!comm->blocking) return group->joined == group->world ? ncclSuccess : ncclInProgress;
    group->joined_cv.wait(lock, [&] { return group->joined == group->world; });
  }
  return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* state) {
  if (comm == nullptr) return ncclInvalidArgument;
  std::lock_guard<std::mutex> lock(comm->group->mu);
  const Group& g = *comm->group;
  if (g.peer_aborted) {
    *state = ncclRemoteError;
  } else if (g.joined < g.world) {
    *state = ncclInProgress;
  } else if (comm->first_pending && g.issued_first < g.world) {
    *state = ncclInProgress;
  } else {
    comm->first_pending = false;
    *state = ncclSuccess;
  }
  return ncclSuccess;
}

ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  return comm == nullptr ? ncclInvalidArgument : ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm == nullptr) return ncclInvalidArgument;
  Leave(comm, /*abort=*/false);
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (comm == nullptr) return ncclInvalidArgument;
  Leave(comm, /*abort=*/true);
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess:
      return "no error";
    case ncclInProgress:
      return "NCCL operation in progress";
    case ncclInvalidArgument:
      return "invalid argument";
    case ncclInvalidUsage:
      return "invalid usage";
    case ncclRemoteError:
      return "remote process exited or there was a network error";
    case ncclSystemError:
      return "unhandled system error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error";
    default:
      return "internal error";
  }
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t dtype,
                           ncclRedOp_t, ncclComm_t comm, cudaStream_t stream) {
  return Collective(Kind::kAllReduce, send, recv, count, dtype, 0, comm, stream);
}
ncclResult_t ncclAllGather(const void* send, void* recv, size_t count, ncclDataType_t dtype,
                           ncclComm_t comm, cudaStream_t stream) {
  return Collective(Kind::kAllGather, send, recv, count, dtype, 0, comm, stream);
}
ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t dtype,
                           int root, ncclComm_t comm, cudaStream_t stream) {
  if (root < 0 || comm == nullptr || root >= comm->group->world) return ncclInvalidArgument;
  return Collective(Kind::kBroadcast, send, recv, count, dtype, root, comm, stream);
}
