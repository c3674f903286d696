// The CUDA runtime API of include/cuda_runtime.h on the host: memory is host
// memory (tracked, and poisoned with NaN bytes on allocation), streams queue
// work and run it when something waits (streams.h), graphs record and replay
// it, launches are validated the way the driver validates them and then run
// block by block. Copies follow the runtime's documented host
// synchronisation: a pageable-source copy to the device lands when its
// stream runs, not when the call returns.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/emu/grid.h"
#include "kernels/cuda/emu/streams.h"

struct tpserve_emu_event {
  std::chrono::steady_clock::time_point at;
  bool recorded = false;
  tpserve_emu::StreamPoint point;  // where the latest record sits in its stream
};
struct tpserve_emu_graph {
  std::vector<tpserve_emu::StreamWorkMaker> ops;
};
struct tpserve_emu_graph_exec {
  std::vector<tpserve_emu::StreamWorkMaker> ops;
};

namespace tpserve_emu {
namespace {

constexpr size_t kDefaultDynamicShared = 48 * 1024;
constexpr size_t kTotalMemory = size_t{16} << 30;

// The emulated part. By default an sm_80 with one SM: the smallest part
// tpserve supports. $TPSERVE_CUDA_EMU_SM=90 emulates an H100 SXM's limits
// (compute capability 9.0, 132 SMs, 227 KiB of opt-in shared memory) for the
// sm_90 paths (wgmma); anything else is the default. Per SM both hold 2048
// threads and 32 blocks, and reserve 1 KiB of shared memory per block (CUDA
// programming guide, "Compute Capabilities").
struct Part {
  int major;
  int sms;
  size_t max_dynamic_shared_optin;
  size_t shared_per_sm;
};
const Part& ThePart() {
  static const Part part = [] {
    const char* env = std::getenv("TPSERVE_CUDA_EMU_SM");
    if (env != nullptr && std::string(env) == "90") return Part{9, 132, 232448, 233472};
    return Part{8, 1, 166912, 167936};
  }();
  return part;
}
constexpr int kThreadsPerSm = 2048;
constexpr int kBlocksPerSm = 32;
constexpr size_t kReservedSharedPerBlock = 1024;

thread_local cudaError_t g_last_error = cudaSuccess;
thread_local int g_device = 0;

// $TPSERVE_CUDA_EMU_DEVICES (1..8, default 1) emulated devices. They share
// the host's memory, so "device" d only selects what cudaGetDevice reports.
int DeviceCount() {
  static const int count = [] {
    const char* env = std::getenv("TPSERVE_CUDA_EMU_DEVICES");
    const int n = env != nullptr ? std::atoi(env) : 1;
    return n >= 1 && n <= 8 ? n : 1;
  }();
  return count;
}
bool ValidDevice(int device) { return device >= 0 && device < DeviceCount(); }

struct Registry {
  // std::mutex, not absl::Mutex: the emulator stands in for the CUDA runtime
  // and depends on the C++ standard library only.
  std::mutex mu;
  std::map<uintptr_t, size_t> device;  // base -> bytes
  std::map<uintptr_t, size_t> pinned;
  // PrefetchL2's pieces, for tests: at most kRecordedPrefetches since the
  // last TakeL2Prefetches (a long-running process that never takes them
  // does not grow without bound).
  std::vector<std::pair<const void*, uint64_t>> prefetches;
  std::map<const void*, int> max_dynamic_shared;
  size_t device_bytes = 0;
  // Freed device blocks, poisoned and kept out of the allocator for a while
  // so a stale pointer (a graph replayed after its buffers were freed) never
  // lands in a live reallocation at the same address and is reported.
  std::deque<std::pair<void*, size_t>> quarantine;
  size_t quarantine_bytes = 0;
};
constexpr size_t kQuarantineBytes = size_t{64} << 20;
Registry& R() {
  static Registry* r = new Registry();
  return *r;
}
constexpr size_t kRecordedPrefetches = size_t{1} << 20;

// The dynamic shared memory a launch of `kernel` may ask for: 48 KiB, or
// what cudaFuncSetAttribute set.
size_t AllowedDynamicShared(const void* kernel) {
  std::lock_guard<std::mutex> lock(R().mu);
  auto it = R().max_dynamic_shared.find(kernel);
  return it != R().max_dynamic_shared.end() ? static_cast<size_t>(it->second)
                                            : kDefaultDynamicShared;
}

bool Inside(const std::map<uintptr_t, size_t>& m, const void* p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = m.upper_bound(a);
  if (it == m.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}

cudaError_t Set(cudaError_t e) {
  if (e != cudaSuccess) g_last_error = e;
  return e;
}

// Work for `stream`: recorded while it captures, queued otherwise.
cudaError_t Enqueue(cudaStream_t stream, StreamWork op) {
  return Set(EnqueueWork(stream, std::move(op)));
}

// Device-memory ranges a copy touches must lie inside one allocation: the
// destination's `dst_bytes` and the source's `src_bytes` (they differ for
// pitched copies).
cudaError_t CheckCopy(void* dst, size_t dst_bytes, const void* src, size_t src_bytes,
                      cudaMemcpyKind kind) {
  std::lock_guard<std::mutex> lock(R().mu);
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (dst_bytes == 0) return cudaSuccess;
  if (dst_dev && !Inside(R().device, dst, dst_bytes)) return cudaErrorInvalidValue;
  if (src_dev && !Inside(R().device, src, src_bytes)) return cudaErrorInvalidValue;
  if (kind == cudaMemcpyDefault &&
      !(Inside(R().device, dst, dst_bytes) || Inside(R().pinned, dst, dst_bytes) ||
        Inside(R().device, src, src_bytes)))
    return cudaErrorInvalidValue;
  return cudaSuccess;
}

bool IsPinned(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(R().mu);
  return Inside(R().pinned, p, bytes);
}

bool IsDeviceArgument(const void* p) {
  std::lock_guard<std::mutex> lock(R().mu);
  return Inside(R().device, p, 1) || Inside(R().pinned, p, 1);
}

// A pageable source of cudaMemcpyAsync is staged when the call is made (the
// bytes copied are those), and read again when the copy runs: the runtime
// only promises to stage it "if it must", so the source has to stay valid and
// unchanged until the copy has run. Sources up to this size are re-read (a
// freed small block is still mapped; the allocator has written its list
// pointers into it, so a freed source shows up as changed).
constexpr size_t kRecheckBytes = 64 * 1024;

void RunToHere(cudaStream_t stream) {
  if (!IsCapturing(stream)) DrainStream(stream);
}

// The host synchronisation of each kind of copy, as the runtime documents it
// ("API synchronization behavior"): `sync_call` for cudaMemcpy.
cudaError_t CopyOnStream(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                         cudaStream_t stream, bool sync_call) {
  if (bytes == 0) return cudaSuccess;
  bool from_host = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyHostToHost;
  bool to_host = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyHostToHost;
  if (kind == cudaMemcpyDefault) {
    std::lock_guard<std::mutex> lock(R().mu);
    from_host = !Inside(R().device, src, bytes);
    to_host = !Inside(R().device, dst, bytes);
  }
  auto plain = [=] {
    std::memmove(dst, src, bytes);
    return true;
  };
  if (from_host && !to_host) {
    if (IsPinned(src, bytes)) {
      // Read when the copy runs; a synchronous call waits for it.
      const cudaError_t e = Enqueue(stream, plain);
      if (e == cudaSuccess && sync_call) RunToHere(stream);
      return e;
    }
    // Pageable: cudaMemcpy syncs the stream first and returns once the
    // bytes are staged; the device copy lands when the stream runs.
    if (sync_call) RunToHere(stream);
    auto staged = std::make_shared<std::vector<unsigned char>>(
        static_cast<const unsigned char*>(src), static_cast<const unsigned char*>(src) + bytes);
    const bool recheck = !sync_call && bytes <= kRecheckBytes;
    return Enqueue(stream, [=] {
      if (recheck && std::memcmp(src, staged->data(), bytes) != 0) {
        Fail(
            "cudaMemcpyAsync: pageable host source %p (%zu bytes) was changed or freed before "
            "the copy ran on its stream; keep it alive and unchanged until the stream has "
            "passed the copy (or stage through pinned memory that outlives it)",
            src, bytes);
      }
      std::memcpy(dst, staged->data(), bytes);
      return true;
    });
  }
  const cudaError_t e = Enqueue(stream, plain);
  if (e != cudaSuccess) return e;
  if (to_host && (sync_call || from_host || !IsPinned(dst, bytes))) {
    // To pageable memory (or any cudaMemcpy to the host): returns complete.
    RunToHere(stream);
  }
  return e;
}

}  // namespace

bool IsDeviceMemory(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(R().mu);
  return Inside(R().device, p, bytes);
}

void SetMaxDynamicShared(const void* kernel, int bytes) {
  std::lock_guard<std::mutex> lock(R().mu);
  R().max_dynamic_shared[kernel] = bytes;
}

int BlocksPerSm(const void* kernel, int threads, size_t shared_bytes) {
  if (threads <= 0 || threads > 1024 || shared_bytes > AllowedDynamicShared(kernel)) return 0;
  const int warps = (threads + 31) / 32;
  const size_t by_shared = ThePart().shared_per_sm / (shared_bytes + kReservedSharedPerBlock);
  return static_cast<int>(
      std::min<size_t>({static_cast<size_t>(kBlocksPerSm),
                        static_cast<size_t>(kThreadsPerSm / 32 / warps), by_shared}));
}

void PrefetchL2(const void* p, uint64_t bytes) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0 || bytes == 0 || bytes % 16 != 0 ||
      bytes > 0xffffffffull) {
    Fail(
        "cp.async.bulk.prefetch.L2: %p, %llu bytes (needs a 16-byte aligned address and a "
        "nonzero multiple of 16 bytes below 2^32)",
        p, static_cast<unsigned long long>(bytes));
  }
  if (!IsDeviceMemory(p, bytes)) {
    Fail("cp.async.bulk.prefetch.L2: [%p, +%llu bytes) is not inside one device allocation", p,
         static_cast<unsigned long long>(bytes));
  }
  std::lock_guard<std::mutex> lock(R().mu);
  if (R().prefetches.size() < kRecordedPrefetches) R().prefetches.emplace_back(p, bytes);
}

std::vector<std::pair<const void*, uint64_t>> TakeL2Prefetches() {
  std::lock_guard<std::mutex> lock(R().mu);
  return std::exchange(R().prefetches, {});
}

void CheckPointerArgument(const char* kernel, int index, const void* p) {
  if (p != nullptr && !IsDeviceArgument(p)) {
    Fail("%s: pointer argument %d (%p) is not device memory", kernel, index, p);
  }
}

namespace {
std::atomic<CooperativeRefusal> g_cooperative_refusal{CooperativeRefusal::kNone};
}  // namespace

void RefuseCooperativeLaunches(CooperativeRefusal refusal) { g_cooperative_refusal = refusal; }

void Submit(const LaunchConfig& c, std::function<void()> check, std::function<void()> body) {
  const unsigned long long threads =
      static_cast<unsigned long long>(c.block.x) * c.block.y * c.block.z;
  if (threads == 0 || threads > 1024 || c.block.z > 64 || c.grid.x == 0 || c.grid.y == 0 ||
      c.grid.z == 0 || c.grid.x > 2147483647u || c.grid.y > 65535 || c.grid.z > 65535) {
    Set(cudaErrorInvalidConfiguration);
    return;
  }
  const size_t allowed = AllowedDynamicShared(c.kernel);
  if (allowed > ThePart().max_dynamic_shared_optin || c.shared_bytes > allowed) {
    Set(cudaErrorInvalidValue);
    return;
  }
  if (c.cooperative) {
    const CooperativeRefusal refusal = g_cooperative_refusal.load();
    if (refusal != CooperativeRefusal::kNone && IsCapturing(c.stream)) {
      InvalidateCapture(c.stream);
      Set(cudaErrorStreamCaptureUnsupported);
      return;
    }
    if (refusal == CooperativeRefusal::kAlways) {
      Set(cudaErrorCooperativeLaunchTooLarge);
      return;
    }
    // The driver refuses a cooperative grid the device cannot hold at once.
    const uint64_t blocks = uint64_t{c.grid.x} * c.grid.y * c.grid.z;
    const int per_sm = BlocksPerSm(c.kernel, static_cast<int>(threads), c.shared_bytes);
    if (blocks > static_cast<uint64_t>(per_sm) * ThePart().sms) {
      Set(cudaErrorCooperativeLaunchTooLarge);
      return;
    }
    if (blocks * threads > kCooperativeThreads) {
      Fail(
          "%s: a cooperative launch of %llu blocks x %llu threads; the emulator runs at most %llu "
          "threads of one at once (use a smaller grid or the default emulated part)",
          c.name, static_cast<unsigned long long>(blocks), threads,
          static_cast<unsigned long long>(kCooperativeThreads));
    }
    if (c.programmatic) Fail("%s: programmatic cooperative launches are not emulated", c.name);
  }
  if (CaptureInvalidated(c.stream)) {
    Set(cudaErrorStreamCaptureInvalidated);
    return;
  }
  Set(EnqueueGrid(
      c.stream,
      [c, check = std::move(check), body = std::move(body)](const std::function<void()>* primary) {
        RunGrid(c, check, body, primary);
      },
      c.programmatic));
}

int EnqueueHostWork(cudaStream_t stream, StreamWorkMaker make) {
  return Set(EnqueueMadeWork(stream, std::move(make)));
}

}  // namespace tpserve_emu

using tpserve_emu::R;

cudaError_t cudaGetDeviceCount(int* count) {
  *count = tpserve_emu::DeviceCount();
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = tpserve_emu::g_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (!tpserve_emu::ValidDevice(device)) return tpserve_emu::Set(cudaErrorInvalidDevice);
  tpserve_emu::g_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (!tpserve_emu::ValidDevice(device)) return tpserve_emu::Set(cudaErrorInvalidDevice);
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof(prop->name), "tpserve CUDA emulator on the CPU");
  prop->totalGlobalMem = tpserve_emu::kTotalMemory;
  prop->sharedMemPerBlock = tpserve_emu::kDefaultDynamicShared;
  prop->sharedMemPerBlockOptin = tpserve_emu::ThePart().max_dynamic_shared_optin;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
  prop->major = tpserve_emu::ThePart().major;
  prop->minor = 0;
  prop->multiProcessorCount = tpserve_emu::ThePart().sms;
  prop->l2CacheSize = 40 << 20;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (!tpserve_emu::ValidDevice(device)) return tpserve_emu::Set(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = 1024;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = 48 * 1024;
      break;
    case cudaDevAttrMultiProcessorCount:
      *value = tpserve_emu::ThePart().sms;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *value = tpserve_emu::ThePart().major;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = 0;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(tpserve_emu::ThePart().max_dynamic_shared_optin);
      break;
    case cudaDevAttrCooperativeLaunch:
      *value = 1;
      break;
    default:
      return tpserve_emu::Set(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  tpserve_emu::DrainDevice();
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = tpserve_emu::g_last_error;
  tpserve_emu::g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return tpserve_emu::g_last_error; }

const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorNotSupported:
      return "cudaErrorNotSupported";
    case cudaErrorCooperativeLaunchTooLarge:
      return "cudaErrorCooperativeLaunchTooLarge";
    case cudaErrorStreamCaptureUnsupported:
      return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated:
      return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorIllegalState:
      return "cudaErrorIllegalState";
    case cudaErrorUnknown:
      return "cudaErrorUnknown";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    default:
      return cudaGetErrorName(err);
  }
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  *ptr = nullptr;
  const size_t size = bytes == 0 ? 1 : bytes;
  std::lock_guard<std::mutex> lock(R().mu);
  if (R().device_bytes + size > tpserve_emu::kTotalMemory) {
    return tpserve_emu::Set(cudaErrorMemoryAllocation);
  }
  void* p = std::aligned_alloc(256, (size + 255) / 256 * 256);
  if (p == nullptr) return tpserve_emu::Set(cudaErrorMemoryAllocation);
  std::memset(p, 0xff, size);  // fresh device memory reads as NaN
  R().device[reinterpret_cast<uintptr_t>(p)] = size;
  R().device_bytes += size;
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  tpserve_emu::DrainDevice();  // cudaFree synchronises the device
  std::lock_guard<std::mutex> lock(R().mu);
  auto it = R().device.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == R().device.end()) return tpserve_emu::Set(cudaErrorInvalidValue);
  R().device_bytes -= it->second;
  std::memset(ptr, 0xff, it->second);
  R().quarantine.emplace_back(ptr, it->second);
  R().quarantine_bytes += it->second;
  R().device.erase(it);
  while (R().quarantine_bytes > tpserve_emu::kQuarantineBytes) {
    R().quarantine_bytes -= R().quarantine.front().second;
    std::free(R().quarantine.front().first);
    R().quarantine.pop_front();
  }
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  *ptr = std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
  if (*ptr == nullptr) return tpserve_emu::Set(cudaErrorMemoryAllocation);
  std::lock_guard<std::mutex> lock(R().mu);
  R().pinned[reinterpret_cast<uintptr_t>(*ptr)] = bytes;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  tpserve_emu::DrainDevice();  // as cudaFree
  std::lock_guard<std::mutex> lock(R().mu);
  if (R().pinned.erase(reinterpret_cast<uintptr_t>(ptr)) == 0) {
    return tpserve_emu::Set(cudaErrorInvalidValue);
  }
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::mutex> lock(R().mu);
  *total_bytes = tpserve_emu::kTotalMemory;
  *free_bytes = tpserve_emu::kTotalMemory - R().device_bytes;
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (cudaError_t e = tpserve_emu::CheckCopy(dst, bytes, src, bytes, kind); e != cudaSuccess) {
    return tpserve_emu::Set(e);
  }
  return tpserve_emu::CopyOnStream(dst, src, bytes, kind, stream, /*sync_call=*/false);
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (tpserve_emu::CapturingOnThisThread()) {
    return tpserve_emu::Set(cudaErrorStreamCaptureUnsupported);
  }
  if (cudaError_t e = tpserve_emu::CheckCopy(dst, bytes, src, bytes, kind); e != cudaSuccess) {
    return tpserve_emu::Set(e);
  }
  return tpserve_emu::CopyOnStream(dst, src, bytes, kind, nullptr, /*sync_call=*/true);
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t stream) {
  if (width > dpitch || width > spitch) return tpserve_emu::Set(cudaErrorInvalidValue);
  if (height == 0 || width == 0) return cudaSuccess;
  const size_t dst_span = dpitch * (height - 1) + width;
  const size_t src_span = spitch * (height - 1) + width;
  if (cudaError_t e = tpserve_emu::CheckCopy(dst, dst_span, src, src_span, kind);
      e != cudaSuccess) {
    return tpserve_emu::Set(e);
  }
  return tpserve_emu::Enqueue(stream, [=] {
    for (size_t r = 0; r < height; ++r) {
      std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                   width);
    }
    return true;
  });
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  if (cudaError_t e = tpserve_emu::CheckCopy(dst, bytes, nullptr, 0, cudaMemcpyHostToDevice);
      e != cudaSuccess) {
    return tpserve_emu::Set(e);
  }
  return tpserve_emu::Enqueue(stream, [=] {
    std::memset(dst, value, bytes);
    return true;
  });
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (tpserve_emu::CapturingOnThisThread()) {
    return tpserve_emu::Set(cudaErrorStreamCaptureUnsupported);
  }
  return cudaMemsetAsync(dst, value, bytes, nullptr);
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  *stream = tpserve_emu::CreateStream(/*non_blocking=*/false);
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  *stream = tpserve_emu::CreateStream((flags & cudaStreamNonBlocking) != 0);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream == nullptr) return tpserve_emu::Set(cudaErrorInvalidResourceHandle);
  tpserve_emu::DestroyStream(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (tpserve_emu::IsCapturing(stream)) {
    tpserve_emu::InvalidateCapture(stream);
    return tpserve_emu::Set(cudaErrorStreamCaptureUnsupported);
  }
  tpserve_emu::DrainStream(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  return tpserve_emu::QueryStream(stream) ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  if (event == nullptr) return tpserve_emu::Set(cudaErrorInvalidResourceHandle);
  if (tpserve_emu::IsCapturing(stream)) return cudaSuccess;  // captured work runs in order
  tpserve_emu::AddWait(stream, event->point);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = new tpserve_emu_event();
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) {
  return cudaEventCreate(event);
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  tpserve_emu::DrainTo(event->point);  // a pending record still writes the event
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  const cudaError_t e = tpserve_emu::Enqueue(stream, [event] {
    event->at = std::chrono::steady_clock::now();
    event->recorded = true;
    return true;
  });
  if (e == cudaSuccess && !tpserve_emu::IsCapturing(stream)) {
    event->point = tpserve_emu::LastPoint(stream);
  }
  return e;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  tpserve_emu::DrainTo(event->point);
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  return tpserve_emu::QueryTo(event->point) ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!tpserve_emu::QueryTo(start->point) || !tpserve_emu::QueryTo(end->point)) {
    return tpserve_emu::Set(cudaErrorNotReady);
  }
  if (!start->recorded || !end->recorded) return tpserve_emu::Set(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  if (!tpserve_emu::BeginCapture(stream)) return tpserve_emu::Set(cudaErrorIllegalState);
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  *graph = nullptr;
  std::vector<tpserve_emu::StreamWorkMaker> ops;
  if (cudaError_t e = tpserve_emu::EndCapture(stream, &ops); e != cudaSuccess) {
    return tpserve_emu::Set(e);
  }
  *graph = new tpserve_emu_graph{std::move(ops)};
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  *status = tpserve_emu::IsCapturing(stream) ? cudaStreamCaptureStatusActive
                                             : cudaStreamCaptureStatusNone;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (graph == nullptr) return tpserve_emu::Set(cudaErrorInvalidValue);
  *exec = new tpserve_emu_graph_exec{graph->ops};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (exec == nullptr) return tpserve_emu::Set(cudaErrorInvalidValue);
  // This run's work, made now, in launch order (emu.h, StreamWorkMaker).
  std::vector<tpserve_emu::StreamWork> run;
  run.reserve(exec->ops.size());
  for (const tpserve_emu::StreamWorkMaker& make : exec->ops) run.push_back(make());
  // A node that is not ready (a collective waiting for its peers) leaves the
  // launch not ready there; the stream polls it again and it goes on from
  // that node, so stream queries and timeouts see it as they see eager work.
  return tpserve_emu::Enqueue(stream, [run = std::move(run), next = size_t{0}]() mutable {
    for (; next < run.size(); ++next) {
      if (!run[next]()) return false;
    }
    return true;
  });
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  // Launches of `exec` still queued keep running it: finish them first.
  tpserve_emu::DrainDevice();
  delete exec;
  return cudaSuccess;
}
