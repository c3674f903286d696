// The memory-transaction model of the CUDA emulator (memory_model.h).
#include "kernels/cuda/emu/memory_model.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace tpserve_emu {

// Defined in runtime.cc: whether [p, p + bytes) is device memory.
bool IsDeviceMemory(const void* p, size_t bytes);

namespace {

struct SiteStats {
  bool store = false;
  uint64_t requests = 0;
  uint64_t sectors = 0;
  uint64_t lines = 0;
  uint64_t useful_bytes = 0;
};

struct Request {
  std::vector<std::pair<uintptr_t, uint32_t>> accesses;  // (address, bytes) of every lane
  bool store = false;
};

struct RequestKey {
  unsigned warp;
  const void* site;
  uint32_t occurrence;
  bool operator==(const RequestKey& o) const {
    return warp == o.warp && site == o.site && occurrence == o.occurrence;
  }
};
struct RequestKeyHash {
  size_t operator()(const RequestKey& k) const {
    return std::hash<const void*>()(k.site) * 31 + k.warp * 1000003u + k.occurrence;
  }
};

// Per OS thread: the block being run.
struct BlockState {
  bool active = false;
  int thread = 0;
  std::vector<std::unordered_map<const void*, uint32_t>> occurrences;  // per block thread
  std::unordered_map<RequestKey, Request, RequestKeyHash> requests;
};
thread_local BlockState g_block_state;
thread_local bool g_inside_model = false;  // the model's own accesses are not counted

struct Launch {
  std::mutex mu;
  std::string kernel;
  double scale = 1.0;  // blocks / blocks run
  std::map<const void*, SiteStats> sites;
  std::unordered_set<uintptr_t> dram_sectors;  // distinct sectors of the launch
};
Launch& L() {
  static Launch* l = new Launch();
  return *l;
}

const char* OutPath() {
  static const char* path = std::getenv("TPSERVE_CUDA_EMU_MODEL");
  return path;
}

std::atomic<bool> g_started{false};
std::string& Tag() {
  static auto* tag = new std::string();
  return *tag;
}
double g_lines_since_start = 0.0;  // under L().mu

uint64_t SampleLimit() {
  static const uint64_t limit = [] {
    const char* v = std::getenv("TPSERVE_CUDA_EMU_MODEL_BLOCKS");
    return v != nullptr ? std::strtoull(v, nullptr, 10) : 0;
  }();
  return limit;
}

}  // namespace

bool ModelEnabled() {
#if defined(TPSERVE_EMU_MEMORY_MODEL)
  return g_started && OutPath() != nullptr && *OutPath() != '\0';
#else
  return false;
#endif
}

void ModelStart(const char* tag) {
  Tag() = tag;
  {
    std::lock_guard<std::mutex> lock(L().mu);
    g_lines_since_start = 0.0;
  }
  g_started = true;
}

uint64_t ModelSampledBlocks(uint64_t blocks) {
  if (!ModelEnabled() || SampleLimit() == 0) return blocks;
  return std::min(blocks, SampleLimit());
}

double ModelLinesSinceStart() {
  std::lock_guard<std::mutex> lock(L().mu);
  return g_lines_since_start;
}
void ModelStop() { g_started = false; }

void ModelLaunchBegin(const char* kernel, uint64_t blocks, uint64_t blocks_run) {
  if (!ModelEnabled()) return;
  g_inside_model = true;
  std::lock_guard<std::mutex> lock(L().mu);
  L().kernel = kernel != nullptr ? kernel : "?";
  L().scale = blocks_run > 0 ? static_cast<double>(blocks) / static_cast<double>(blocks_run) : 1.0;
  L().sites.clear();
  L().dram_sectors.clear();
  g_inside_model = false;
}

void ModelBlockBegin(unsigned threads) {
  if (!ModelEnabled()) return;
  g_inside_model = true;
  BlockState& b = g_block_state;
  b.active = true;
  b.occurrences.assign(threads, {});
  b.requests.clear();
  g_inside_model = false;
}

void ModelSetThread(int linear) { g_block_state.thread = linear; }

void ModelAccess(const void* addr, size_t bytes, bool store, const void* site) {
  BlockState& b = g_block_state;
  if (!b.active || g_inside_model) return;
  g_inside_model = true;
  if (IsDeviceMemory(addr, 1)) {
    const uint32_t occ = b.occurrences[b.thread][site]++;
    Request& r = b.requests[RequestKey{static_cast<unsigned>(b.thread / 32), site, occ}];
    r.store = store;
    r.accesses.emplace_back(reinterpret_cast<uintptr_t>(addr), static_cast<uint32_t>(bytes));
  }
  g_inside_model = false;
}

void ModelBlockEnd() {
  BlockState& b = g_block_state;
  if (!b.active) return;
  g_inside_model = true;
  std::map<const void*, SiteStats> sites;
  std::vector<uintptr_t> sectors_all;
  for (auto& [key, r] : b.requests) {
    std::vector<uintptr_t> sectors, lines, bytes;
    for (const auto& [a, n] : r.accesses) {
      for (uintptr_t s = a >> 5; s <= (a + n - 1) >> 5; ++s) sectors.push_back(s);
      for (uintptr_t l = a >> 7; l <= (a + n - 1) >> 7; ++l) lines.push_back(l);
      for (uint32_t i = 0; i < n; ++i) bytes.push_back(a + i);
    }
    for (auto* v : {&sectors, &lines, &bytes}) {
      std::sort(v->begin(), v->end());
      v->erase(std::unique(v->begin(), v->end()), v->end());
    }
    SiteStats& s = sites[key.site];
    s.store = r.store;
    ++s.requests;
    s.sectors += sectors.size();
    s.lines += lines.size();
    s.useful_bytes += bytes.size();
    sectors_all.insert(sectors_all.end(), sectors.begin(), sectors.end());
  }
  b.active = false;
  b.requests.clear();
  {
    std::lock_guard<std::mutex> lock(L().mu);
    for (const auto& [site, s] : sites) {
      SiteStats& t = L().sites[site];
      t.store = s.store;
      t.requests += s.requests;
      t.sectors += s.sectors;
      t.lines += s.lines;
      t.useful_bytes += s.useful_bytes;
    }
    L().dram_sectors.insert(sectors_all.begin(), sectors_all.end());
  }
  g_inside_model = false;
}

// One line per site: tag, launch number, kernel, site (object file + offset, for addr2line),
// load/store, requests, sectors, lines, useful bytes, then the launch's
// distinct-sector bytes (the same on every line of one launch); counts
// scaled by the launch's sampling.
void ModelLaunchEnd() {
  if (!ModelEnabled()) return;
  g_inside_model = true;
  std::lock_guard<std::mutex> lock(L().mu);
  static uint64_t launches = 0;
  ++launches;
  const double scale = L().scale;
  auto scaled = [scale](uint64_t n) {
    return static_cast<unsigned long long>(static_cast<double>(n) * scale + 0.5);
  };
  for (const auto& [site, s] : L().sites)
    g_lines_since_start += static_cast<double>(s.lines) * scale;
  if (FILE* f = std::fopen(OutPath(), "a")) {
    for (const auto& [site, s] : L().sites) {
      Dl_info info{};
      uintptr_t offset = reinterpret_cast<uintptr_t>(site);
      const char* object = "?";
      if (dladdr(site, &info) != 0 && info.dli_fname != nullptr) {
        object = info.dli_fname;
        offset -= reinterpret_cast<uintptr_t>(info.dli_fbase);
      }
      std::fprintf(f, "%s\t%llu\t%s\t%s+0x%zx\t%s\t%llu\t%llu\t%llu\t%llu\t%llu\n", Tag().c_str(),
                   static_cast<unsigned long long>(launches), L().kernel.c_str(), object,
                   static_cast<size_t>(offset), s.store ? "store" : "load", scaled(s.requests),
                   scaled(s.sectors), scaled(s.lines), scaled(s.useful_bytes),
                   scaled(L().dram_sectors.size() * uint64_t{32}));
    }
    std::fclose(f);
  }
  g_inside_model = false;
}

}  // namespace tpserve_emu

#if defined(TPSERVE_EMU_MEMORY_MODEL)
// GCC's address-sanitizer callbacks (-fsanitize=address with
// --param asan-instrumentation-with-call-threshold=0): the model is their
// only user; no sanitizer runtime is linked in this build.
extern "C" {
void __asan_init() {}
void __asan_version_mismatch_check_v8() {}
void __asan_handle_no_return() {}
// Headers that see __SANITIZE_ADDRESS__ (abseil's containers) call these.
void __asan_poison_memory_region(const volatile void*, size_t) {}
void __asan_unpoison_memory_region(const volatile void*, size_t) {}
void __asan_before_dynamic_init(const char*) {}
void __asan_after_dynamic_init() {}
#define TPSERVE_EMU_ACCESS(n)                                             \
  void __asan_load##n(void* p) {                                          \
    ::tpserve_emu::ModelAccess(p, n, false, __builtin_return_address(0)); \
  }                                                                       \
  void __asan_store##n(void* p) {                                         \
    ::tpserve_emu::ModelAccess(p, n, true, __builtin_return_address(0));  \
  }                                                                       \
  void __asan_load##n##_noabort(void* p) {                                \
    ::tpserve_emu::ModelAccess(p, n, false, __builtin_return_address(0)); \
  }                                                                       \
  void __asan_store##n##_noabort(void* p) {                               \
    ::tpserve_emu::ModelAccess(p, n, true, __builtin_return_address(0));  \
  }
TPSERVE_EMU_ACCESS(1)
TPSERVE_EMU_ACCESS(2)
TPSERVE_EMU_ACCESS(4)
TPSERVE_EMU_ACCESS(8)
TPSERVE_EMU_ACCESS(16)
#undef TPSERVE_EMU_ACCESS
void __asan_loadN(void* p, size_t n) {
  ::tpserve_emu::ModelAccess(p, n, false, __builtin_return_address(0));
}
void __asan_storeN(void* p, size_t n) {
  ::tpserve_emu::ModelAccess(p, n, true, __builtin_return_address(0));
}
void __asan_loadN_noabort(void* p, size_t n) {
  ::tpserve_emu::ModelAccess(p, n, false, __builtin_return_address(0));
}
void __asan_storeN_noabort(void* p, size_t n) {
  ::tpserve_emu::ModelAccess(p, n, true, __builtin_return_address(0));
}
}
#endif
