// TMA tile loads and mbarriers for the emulator (tma_sm90_emu.h says what
// they check). MbarrierWait is in scheduler.cc: it parks the calling fiber.
#include <cstdint>
#include <cstring>

#include "kernels/cuda/emu/tma_sm90_emu.h"
#include "kernels/cuda/emu/wgmma_sm90_emu.h"

namespace tpserve_emu {
namespace {

constexpr uint64_t kMapMagic = 0x54504d41505f454dull;  // marks an emulator tensor map

struct StoredMap {
  uint64_t magic;
  TensorMapFields f;
};
static_assert(sizeof(StoredMap) <= 128, "fits CUtensorMap's 128 bytes");

Mbarrier& Find(const void* bar, const char* what) {
  for (Mbarrier& m : g_block->mbarriers) {
    if (m.addr == bar) return m;
  }
  Fail("%s on shared memory at %p, which no mbarrier.init set up", what, bar);
}

// The phase completes once its arrivals and transaction bytes are all in.
void MaybeComplete(Mbarrier& m) {
  if (m.pending == 0 && m.tx == 0) {
    ++m.phase;
    m.pending = m.expected;
  }
}

bool InDynamicShared(const void* p, size_t bytes) {
  const auto* q = static_cast<const unsigned char*>(p);
  const unsigned char* base = g_block->dynamic_shared;
  return base != nullptr && q >= base && q + bytes <= base + g_block->dynamic_shared_bytes;
}

const TensorMapFields& Decode(const void* map) {
  const auto* stored = static_cast<const StoredMap*>(map);
  // (Not checked: 64-byte alignment. A by-value kernel parameter is not
  // over-aligned on the host's stack; CUDA aligns a __grid_constant__ one.)
  if (stored->magic != kMapMagic) {
    Fail("cp.async.bulk.tensor: %p is not a tensor map EncodeTensorMapBf16 made", map);
  }
  return stored->f;
}

}  // namespace

void EncodeTensorMap(void* map, const TensorMapFields& f) {
  StoredMap stored{kMapMagic, f};
  std::memset(map, 0, 128);
  std::memcpy(map, &stored, sizeof(stored));
}

void MbarrierInit(const void* bar, uint32_t count) {
  if (reinterpret_cast<uintptr_t>(bar) % 8 != 0)
    Fail("mbarrier.init: %p is not 8-byte aligned", bar);
  if (count == 0) Fail("mbarrier.init: count 0");
  const Mbarrier fresh{bar, count, count, 0, 0, g_thread->linear, false};
  for (Mbarrier& m : g_block->mbarriers) {
    if (m.addr == bar) {
      m = fresh;
      return;
    }
  }
  g_block->mbarriers.push_back(fresh);
}

void FenceMbarrierInits() {
  for (Mbarrier& m : g_block->mbarriers) m.init_visible |= m.init_thread == g_thread->linear;
}

void MbarrierArrive(const void* bar, uint32_t tx_bytes) {
  Mbarrier& m = Find(bar, "mbarrier.arrive");
  if (m.pending == 0) {
    Fail(
        "mbarrier.arrive at %p: the phase has all %u arrivals and waits for %lld transaction "
        "bytes; this arrival would belong to no phase",
        bar, m.expected, static_cast<long long>(m.tx));
  }
  m.tx += tx_bytes;
  --m.pending;
  MaybeComplete(m);
  YieldToOtherThreads();
}

void MbarrierExpectTx(const void* bar, uint32_t tx_bytes) {
  Find(bar, "mbarrier.expect_tx").tx += tx_bytes;
}

bool MbarrierPhaseDone(const void* bar, uint32_t parity) {
  const Mbarrier& m = Find(bar, "mbarrier.try_wait");
  return (m.phase & 1u) != (parity & 1u);
}

void TmaLoad2d(void* dst, const void* map, int c0, int c1, const void* bar) {
  const TensorMapFields& f = Decode(map);
  const size_t bytes = static_cast<size_t>(f.box_rows) * f.box_cols * f.elem_bytes;
  if (f.box_cols * f.elem_bytes != 128) {
    Fail("cp.async.bulk.tensor: box rows of %d bytes; the emulator takes 128-byte swizzle rows",
         f.box_cols * f.elem_bytes);
  }
  if (reinterpret_cast<uintptr_t>(dst) % 1024 != 0 || !InDynamicShared(dst, bytes)) {
    Fail(
        "cp.async.bulk.tensor: destination %p (%zu bytes) is not 1024-byte aligned in the block's "
        "dynamic shared memory",
        dst, bytes);
  }
  if (const Mbarrier& m = Find(bar, "cp.async.bulk.tensor's mbarrier"); !m.init_visible) {
    Fail(
        "cp.async.bulk.tensor completes on the mbarrier at %p, whose mbarrier.init thread %d has "
        "not made visible to the async proxy (fence.mbarrier_init or fence.proxy.async after the "
        "init, before the barrier that publishes it)",
        bar, m.init_thread);
  }
  CheckNoWgmmaReads(dst, static_cast<int>(bytes), "cp.async.bulk.tensor");
  std::memset(dst, 0xff, bytes);  // in flight: what lands there is not there yet
  AsyncProxyWrote(dst, bytes);
  TmaCopy c;
  c.dst = static_cast<unsigned char*>(dst);
  std::memcpy(c.map, map, sizeof(c.map));
  c.c0 = c0;
  c.c1 = c1;
  c.bar = bar;
  g_block->tma_copies.push_back(c);
}

bool LandTmaCopies() {
  std::vector<TmaCopy> copies;
  copies.swap(g_block->tma_copies);
  for (const TmaCopy& c : copies) {
    const TensorMapFields& f = Decode(c.map);
    const int row_bytes = f.box_cols * f.elem_bytes;
    CheckNoWgmmaReads(c.dst, f.box_rows * row_bytes, "cp.async.bulk.tensor (landing)");
    for (int r = 0; r < f.box_rows; ++r) {
      const int64_t row = static_cast<int64_t>(c.c1) + r;
      for (int e = 0; e < f.box_cols; ++e) {
        const int64_t col = static_cast<int64_t>(c.c0) + e;
        // Byte e * elem of box row r, at its swizzled place: the 16-byte
        // chunk index XOR address bits 7-9 (the row within the 1024-byte atom).
        const uintptr_t logical = reinterpret_cast<uintptr_t>(c.dst) +
                                  static_cast<uintptr_t>(r) * row_bytes +
                                  static_cast<uintptr_t>(e) * f.elem_bytes;
        auto* out = reinterpret_cast<unsigned char*>(logical ^ (((logical >> 7) & 7) << 4));
        if (row < 0 || row >= f.rows || col < 0 || col >= f.cols) {
          std::memset(out, 0, f.elem_bytes);
        } else {
          std::memcpy(out,
                      static_cast<const unsigned char*>(f.base) + row * f.row_stride_bytes +
                          col * f.elem_bytes,
                      f.elem_bytes);
        }
      }
    }
    AsyncProxyWrote(c.dst, static_cast<size_t>(f.box_rows) * row_bytes);
    Mbarrier& m = Find(c.bar, "cp.async.bulk.tensor's complete_tx");
    m.tx -= static_cast<int64_t>(f.box_rows) * row_bytes;
    MaybeComplete(m);
  }
  return !copies.empty();
}

void SetMaxRegisters(int regs, bool inc) {
  const char* op = inc ? "setmaxnreg.inc" : "setmaxnreg.dec";
  if (regs < 24 || regs > 256 || regs % 8 != 0) {
    Fail("%s %d: the count must be a multiple of 8 in [24, 256]", op, regs);
  }
  const dim3 dim = g_block->dim;
  const unsigned threads = dim.x * dim.y * dim.z;
  if (threads % 128 != 0) Fail("%s: the block's %u threads are not whole warpgroups", op, threads);
  std::vector<WarpgroupRegisters>& groups = g_block->warpgroup_registers;
  groups.resize(threads / 128);
  WarpgroupRegisters& g = groups[g_thread->linear / 128];
  if (g.threads > 0 && (g.regs != regs || g.inc != inc)) {
    Fail(
        "%s %d in warpgroup %d, whose other threads executed setmaxnreg.%s %d (.aligned: one "
        "instruction for the whole warpgroup)",
        op, regs, g_thread->linear / 128, g.inc ? "inc" : "dec", g.regs);
  }
  if (++g.threads > 128) {
    Fail("%s: a thread of warpgroup %d executed a second setmaxnreg", op, g_thread->linear / 128);
  }
  g.regs = regs;
  g.inc = inc;
  // The most a block of this size can have been given at launch: 65536
  // registers per SM, allocated per warp in units of 256.
  const int64_t warps = threads / 32;
  const int64_t pool = 65536 / warps / 256 * 256 * warps;
  int64_t total = 0;
  for (const WarpgroupRegisters& w : groups) total += int64_t{w.regs} * 128;
  if (total > pool) {
    Fail(
        "%s %d: the block's warpgroups would hold %lld registers, more than the %lld a block of "
        "%u threads can have (65536 per SM, 256 per warp at a time)",
        op, regs, static_cast<long long>(total), static_cast<long long>(pool), threads);
  }
}

void CheckSetMaxRegistersAtEnd(const Block& block) {
  const std::vector<WarpgroupRegisters>& groups = block.warpgroup_registers;
  for (size_t i = 0; i < groups.size(); ++i) {
    if (groups[i].threads != 0 && groups[i].threads != 128) {
      Fail("warpgroup %zu: %d of its 128 threads executed setmaxnreg (.aligned: all must)", i,
           groups[i].threads);
    }
  }
}

}  // namespace tpserve_emu
