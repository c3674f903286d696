// The CUDA runtime API of include/cuda_runtime.h on the host: memory is host
// memory (tracked, and poisoned with NaN bytes on allocation), streams run
// work synchronously, graphs record and replay it, launches are validated the
// way the driver validates them and then run block by block.
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "kernels/cuda/emu/scheduler.h"

struct tpserve_emu_stream {
  bool capturing = false;
  bool invalidated = false;
  std::vector<std::function<void()>> captured;
};
struct tpserve_emu_event {
  std::chrono::steady_clock::time_point at;
  bool recorded = false;
};
struct tpserve_emu_graph {
  std::vector<std::function<void()>> ops;
};
struct tpserve_emu_graph_exec {
  std::vector<std::function<void()>> ops;
};

namespace tpserve_emu {
namespace {

// sm_80 limits: the emulated device is the smallest part tpserve supports.
constexpr size_t kDefaultDynamicShared = 48 * 1024;
constexpr size_t kMaxDynamicSharedOptin = 166912;
constexpr size_t kTotalMemory = size_t{16} << 30;

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
thread_local int g_capturing_streams = 0;

struct Registry {
  // std::mutex, not absl::Mutex: the emulator stands in for the CUDA runtime
  // and depends on the C++ standard library only.
  std::mutex mu;
  std::map<uintptr_t, size_t> device;  // base -> bytes
  std::map<uintptr_t, size_t> pinned;
  std::map<const void*, int> max_dynamic_shared;
  size_t device_bytes = 0;
};
Registry& R() {
  static Registry* r = new Registry();
  return *r;
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

// Work for `stream`: recorded while it captures, run now otherwise.
cudaError_t Enqueue(cudaStream_t stream, std::function<void()> op) {
  if (stream != nullptr && stream->capturing) {
    stream->captured.push_back(std::move(op));
    return cudaSuccess;
  }
  if (g_capturing_streams > 0) {
    // Legacy-stream or other-stream work during a thread-local capture is
    // not allowed by the driver; it invalidates the capture.
    return Set(cudaErrorStreamCaptureUnsupported);
  }
  op();
  return cudaSuccess;
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

bool IsDeviceArgument(const void* p) {
  std::lock_guard<std::mutex> lock(R().mu);
  return Inside(R().device, p, 1) || Inside(R().pinned, p, 1);
}

void RunGrid(const LaunchConfig& c, const std::function<void()>& check,
             const std::function<void()>& body) {
  check();
  std::vector<unsigned char> shared(c.shared_bytes + 128);
  for (unsigned z = 0; z < c.grid.z; ++z) {
    for (unsigned y = 0; y < c.grid.y; ++y) {
      for (unsigned x = 0; x < c.grid.x; ++x) {
        Block b;
        b.idx = uint3{x, y, z};
        b.dim = c.block;
        b.grid = c.grid;
        // Uninitialised shared memory reads as NaN.
        std::memset(shared.data(), 0xff, shared.size());
        b.dynamic_shared =
            shared.data() + (128 - reinterpret_cast<uintptr_t>(shared.data()) % 128) % 128;
        b.dynamic_shared_bytes = c.shared_bytes;
        RunBlock(b, body, c.name);
      }
    }
  }
}

}  // namespace

void SetMaxDynamicShared(const void* kernel, int bytes) {
  std::lock_guard<std::mutex> lock(R().mu);
  R().max_dynamic_shared[kernel] = bytes;
}

void CheckPointerArgument(const char* kernel, int index, const void* p) {
  if (p != nullptr && !IsDeviceArgument(p)) {
    Fail("%s: pointer argument %d (%p) is not device memory", kernel, index, p);
  }
}

void Submit(const LaunchConfig& c, std::function<void()> check, std::function<void()> body) {
  const unsigned long long threads =
      static_cast<unsigned long long>(c.block.x) * c.block.y * c.block.z;
  if (threads == 0 || threads > 1024 || c.block.z > 64 || c.grid.x == 0 || c.grid.y == 0 ||
      c.grid.z == 0 || c.grid.x > 2147483647u || c.grid.y > 65535 || c.grid.z > 65535) {
    Set(cudaErrorInvalidConfiguration);
    return;
  }
  size_t allowed = kDefaultDynamicShared;
  {
    std::lock_guard<std::mutex> lock(R().mu);
    auto it = R().max_dynamic_shared.find(c.kernel);
    if (it != R().max_dynamic_shared.end()) allowed = static_cast<size_t>(it->second);
  }
  if (allowed > kMaxDynamicSharedOptin || c.shared_bytes > allowed) {
    Set(cudaErrorInvalidValue);
    return;
  }
  if (c.stream != nullptr && c.stream->invalidated) {
    Set(cudaErrorStreamCaptureInvalidated);
    return;
  }
  Enqueue(c.stream,
          [c, check = std::move(check), body = std::move(body)] { RunGrid(c, check, body); });
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
  prop->sharedMemPerBlockOptin = tpserve_emu::kMaxDynamicSharedOptin;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
  prop->major = 8;
  prop->minor = 0;
  prop->multiProcessorCount = 1;
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
      *value = 1;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *value = 8;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = 0;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(tpserve_emu::kMaxDynamicSharedOptin);
      break;
    default:
      return tpserve_emu::Set(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
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
  std::lock_guard<std::mutex> lock(R().mu);
  auto it = R().device.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == R().device.end()) return tpserve_emu::Set(cudaErrorInvalidValue);
  R().device_bytes -= it->second;
  R().device.erase(it);
  std::free(ptr);
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
  return tpserve_emu::Enqueue(stream, [=] { std::memmove(dst, src, bytes); });
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (tpserve_emu::g_capturing_streams > 0) {
    return tpserve_emu::Set(cudaErrorStreamCaptureUnsupported);
  }
  return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
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
  });
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  if (cudaError_t e = tpserve_emu::CheckCopy(dst, bytes, nullptr, 0, cudaMemcpyHostToDevice);
      e != cudaSuccess) {
    return tpserve_emu::Set(e);
  }
  return tpserve_emu::Enqueue(stream, [=] { std::memset(dst, value, bytes); });
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (tpserve_emu::g_capturing_streams > 0) {
    return tpserve_emu::Set(cudaErrorStreamCaptureUnsupported);
  }
  return cudaMemsetAsync(dst, value, bytes, nullptr);
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  *stream = new tpserve_emu_stream();
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  return cudaStreamCreate(stream);
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream == nullptr) return tpserve_emu::Set(cudaErrorInvalidResourceHandle);
  if (stream->capturing) --tpserve_emu::g_capturing_streams;
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (stream != nullptr && stream->capturing) {
    stream->invalidated = true;
    return tpserve_emu::Set(cudaErrorStreamCaptureUnsupported);
  }
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = new tpserve_emu_event();
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) {
  return cudaEventCreate(event);
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  return tpserve_emu::Enqueue(stream, [event] {
    event->at = std::chrono::steady_clock::now();
    event->recorded = true;
  });
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventQuery(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!start->recorded || !end->recorded) return tpserve_emu::Set(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  if (stream == nullptr || stream->capturing) return tpserve_emu::Set(cudaErrorIllegalState);
  stream->capturing = true;
  stream->invalidated = false;
  stream->captured.clear();
  ++tpserve_emu::g_capturing_streams;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  *graph = nullptr;
  if (stream == nullptr || !stream->capturing) return tpserve_emu::Set(cudaErrorIllegalState);
  stream->capturing = false;
  --tpserve_emu::g_capturing_streams;
  if (stream->invalidated) {
    stream->invalidated = false;
    stream->captured.clear();
    return tpserve_emu::Set(cudaErrorStreamCaptureInvalidated);
  }
  *graph = new tpserve_emu_graph{std::move(stream->captured)};
  stream->captured.clear();
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  *status = stream != nullptr && stream->capturing ? cudaStreamCaptureStatusActive
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
  return tpserve_emu::Enqueue(stream, [exec] {
    for (const auto& op : exec->ops) op();
  });
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}
