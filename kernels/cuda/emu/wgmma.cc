// wgmma.mma_async for the emulator (wgmma_sm90_emu.h says what it checks).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cuda/emu/tma_sm90_emu.h"
#include "kernels/cuda/emu/wgmma_sm90_emu.h"

namespace tpserve_emu {
namespace {

constexpr int kWarpgroupThreads = 128;

struct Operand {
  uintptr_t start;   // host address of row 0's k slice
  uintptr_t stride;  // between 8-row atoms
};

// Decodes a matrix descriptor (PTX ISA "Matrix Descriptor Format": start
// address >> 4 in bits 0-13, leading byte offset >> 4 in 16-29, stride byte
// offset >> 4 in 32-45, base offset in 49-51, swizzle mode in 62-63).
Operand Decode(uint64_t desc, const char* which) {
  const int layout = static_cast<int>(desc >> 62);
  if (layout != 1) {
    Fail(
        "wgmma: %s descriptor has swizzle mode %d; the emulator takes the 128-byte swizzle (1) "
        "only",
        which, layout);
  }
  if (((desc >> 49) & 7) != 0) Fail("wgmma: %s descriptor has a nonzero base offset", which);
  const uintptr_t start =
      reinterpret_cast<uintptr_t>(g_block->dynamic_shared) + ((desc & 0x3FFF) << 4);
  const uintptr_t stride = ((desc >> 32) & 0x3FFF) << 4;
  if (stride == 0) Fail("wgmma: %s descriptor has a zero stride byte offset", which);
  if (start % 128 + 32 > 128) {
    Fail(
        "wgmma: %s operand's 16 k values (32 bytes at byte %d of the row) cross its 128-byte "
        "swizzle row",
        which, static_cast<int>(start % 128));
  }
  if ((start - start % 128) % 1024 != 0) {
    Fail("wgmma: %s operand's 8-row swizzle atom at %p is not 1024-byte aligned", which,
         reinterpret_cast<void*>(start - start % 128));
  }
  return {start, stride};
}

// Element (row, k) of a K-major operand in the 128-byte swizzle: 16-byte
// chunk c of a 128-byte row r sits at chunk c ^ (r % 8), from the address
// bits as the hardware applies it (so the atom alignment matters).
const uint16_t* Element(const Operand& o, int row, int k) {
  const uintptr_t logical = o.start + (row / 8) * o.stride + (row % 8) * 128 + k * 2;
  const uintptr_t physical = logical ^ (((logical >> 7) & 7) << 4);
  const uintptr_t base = reinterpret_cast<uintptr_t>(g_block->dynamic_shared);
  if (physical < base || physical + 2 > base + g_block->dynamic_shared_bytes) {
    Fail("wgmma: operand row %d reads %p, outside the block's %zu bytes of dynamic shared memory",
         row, reinterpret_cast<void*>(physical), g_block->dynamic_shared_bytes);
  }
  return reinterpret_cast<const uint16_t*>(physical);
}

float Bf16(uint16_t bits) {
  const uint32_t v = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &v, sizeof(f));
  return f;
}

// The bytes an operand of `rows` rows spans (whole 128-byte rows).
std::pair<const unsigned char*, const unsigned char*> Span(const Operand& o, int rows) {
  const uintptr_t lo = o.start - o.start % 128;
  const uintptr_t hi = lo + ((rows - 1) / 8) * o.stride + ((rows - 1) % 8) * 128 + 128;
  return {reinterpret_cast<const unsigned char*>(lo), reinterpret_cast<const unsigned char*>(hi)};
}

// This thread's rows of A and columns of B: its accumulator fragment.
struct Fragment {
  int row0;  // rows row0 and row0 + 8
  int col0;  // columns 8j + col0 and + 1
};
Fragment ThisThread() {
  const int in_group = g_thread->linear % kWarpgroupThreads;
  const int lane = in_group % 32;
  return {16 * (in_group / 32) + lane / 4, 2 * (lane % 4)};
}

// Calls visit(element, 'A' or 'B', row) for each operand element this
// thread's products read.
template <typename Visit>
void ForEachOperand(const Operand& a, const Operand& b, int n, Visit&& visit) {
  const Fragment f = ThisThread();
  for (int k = 0; k < 16; ++k) {
    visit(Element(a, f.row0, k), 'A', f.row0);
    visit(Element(a, f.row0 + 8, k), 'A', f.row0 + 8);
    for (int c = f.col0; c < n; c += 8) {
      visit(Element(b, c, k), 'B', c);
      visit(Element(b, c + 1, k), 'B', c + 1);
    }
  }
}

// A hash of the operand bits this thread's products read.
uint64_t HashOperands(const Operand& a, const Operand& b, int n) {
  uint64_t h = 1469598103934665603ull;
  ForEachOperand(a, b, n, [&h](const uint16_t* e, char, int) { h = (h ^ *e) * 1099511628211ull; });
  return h;
}

std::vector<unsigned char>& AsyncView() {
  std::vector<unsigned char>& view = g_block->async_view;
  // Before any fence the async proxy sees the block start's poison.
  if (view.empty()) view.assign(g_block->dynamic_shared_bytes, 0xff);
  return view;
}

// Fails unless every operand byte this thread reads is as the async proxy
// sees it.
void CheckVisibleToAsyncProxy(const Operand& a, const Operand& b, int n) {
  const unsigned char* view = AsyncView().data();
  const unsigned char* base = g_block->dynamic_shared;
  ForEachOperand(a, b, n, [&](const uint16_t* e, char which, int row) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(e);
    if (std::memcmp(bytes, view + (bytes - base), 2) != 0) {
      Fail(
          "wgmma: operand %c row %d reads shared memory at %p written through the generic proxy "
          "(a store or cp.async) with no fence.proxy.async after the write: the wgmma may not "
          "see it (fence after the writes, before the barrier that orders them)",
          which, row, static_cast<const void*>(bytes));
    }
  });
}

void Release(const WgmmaOp& op, const unsigned char* lo) {
  auto& reads = g_block->wgmma_reads;
  const int group = g_thread->linear / kWarpgroupThreads;
  for (size_t i = 0; i < reads.size(); ++i) {
    if (reads[i].warpgroup == group && reads[i].seq == op.seq && reads[i].lo == lo) {
      if (--reads[i].holders == 0) reads.erase(reads.begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
  }
}

void Hold(uint64_t seq, std::pair<const unsigned char*, const unsigned char*> span) {
  const int group = g_thread->linear / kWarpgroupThreads;
  for (WgmmaRead& r : g_block->wgmma_reads) {
    if (r.warpgroup == group && r.seq == seq && r.lo == span.first) {
      ++r.holders;
      return;
    }
  }
  g_block->wgmma_reads.push_back({span.first, span.second, group, seq, 1});
}

// Retires t.wgmma_ops[i] (all before it are retired).
void Retire(size_t i) {
  Thread& t = *g_thread;
  const WgmmaOp& op = t.wgmma_ops[i];
  const Operand a = Decode(op.a_desc, "A"), b = Decode(op.b_desc, "B");
  if (HashOperands(a, b, op.n) != op.operand_hash) {
    Fail(
        "wgmma: shared memory an in-flight wgmma reads changed before the wgmma.wait_group "
        "that retired it");
  }
  Release(op, Span(a, 64).first);
  Release(op, Span(b, op.n).first);
  auto acc = t.wgmma_accumulators.begin();
  while (acc->first != op.d) ++acc;
  for (int e = 0; e < op.n / 2; ++e) acc->second[e] += op.sums[e];
  bool more = false;
  for (size_t j = i + 1; j < t.wgmma_ops.size(); ++j) more |= t.wgmma_ops[j].d == op.d;
  if (!more) {
    std::memcpy(op.d, acc->second.data(), acc->second.size() * sizeof(float));
    t.wgmma_accumulators.erase(acc);
  }
}

}  // namespace

uint32_t SharedWindowAddress(const void* p) {
  const auto* base = g_block->dynamic_shared;
  const auto* q = static_cast<const unsigned char*>(p);
  if (base == nullptr || q < base || q > base + g_block->dynamic_shared_bytes) {
    Fail("shared address of %p: the emulator maps dynamic shared memory only", p);
  }
  return static_cast<uint32_t>(q - base);
}

void WgmmaIssue(float* d, int n, uint64_t a_desc, uint64_t b_desc) {
  const dim3 dim = g_block->dim;
  if ((dim.x * dim.y * dim.z) % kWarpgroupThreads != 0) {
    Fail("wgmma: the block's %u threads are not whole warpgroups of 128", dim.x * dim.y * dim.z);
  }
  Thread& t = *g_thread;
  const Operand a = Decode(a_desc, "A"), b = Decode(b_desc, "B");
  CheckVisibleToAsyncProxy(a, b, n);
  WgmmaOp op;
  op.d = d;
  op.n = n;
  op.seq = t.wgmma_issued++;
  op.a_desc = a_desc;
  op.b_desc = b_desc;
  op.operand_hash = HashOperands(a, b, n);
  op.sums.resize(n / 2);
  const Fragment f = ThisThread();
  for (int j = 0; j < n / 8; ++j) {
    for (int e = 0; e < 4; ++e) {
      const int row = f.row0 + (e / 2) * 8, col = 8 * j + f.col0 + e % 2;
      float sum = 0.0f;  // bf16 products are exact in f32
      for (int k = 0; k < 16; ++k) sum += Bf16(*Element(a, row, k)) * Bf16(*Element(b, col, k));
      op.sums[4 * j + e] = sum;
    }
  }
  Hold(op.seq, Span(a, 64));
  Hold(op.seq, Span(b, n));
  bool tracked = false;
  for (const auto& acc : t.wgmma_accumulators) tracked |= acc.first == d;
  if (!tracked) {
    t.wgmma_accumulators.emplace_back(d, std::vector<float>(d, d + n / 2));
    for (int i = 0; i < n / 2; ++i) d[i] = std::numeric_limits<float>::quiet_NaN();
  }
  t.wgmma_ops.push_back(std::move(op));
}

void WgmmaCommit() {
  Thread& t = *g_thread;
  t.wgmma_groups.push_back(t.wgmma_ops.size());
}

void WgmmaWait(int pending) {
  Thread& t = *g_thread;
  if (static_cast<int>(t.wgmma_groups.size()) <= pending) return;
  const size_t retire = t.wgmma_groups[t.wgmma_groups.size() - pending - 1];
  for (size_t i = 0; i < retire; ++i) Retire(i);
  t.wgmma_ops.erase(t.wgmma_ops.begin(), t.wgmma_ops.begin() + static_cast<std::ptrdiff_t>(retire));
  t.wgmma_groups.erase(t.wgmma_groups.begin(), t.wgmma_groups.end() - pending);
  for (size_t& end : t.wgmma_groups) end -= retire;
}

void CheckNoWgmmaReads(const void* p, int bytes, const char* writer) {
  const auto* lo = static_cast<const unsigned char*>(p);
  for (const WgmmaRead& r : g_block->wgmma_reads) {
    if (lo < r.hi && lo + bytes > r.lo) {
      Fail(
          "%s writes shared memory at %p that an in-flight wgmma of warpgroup %d reads: retire "
          "it (wgmma.wait_group) before reusing the buffer",
          writer, p, r.warpgroup);
    }
  }
}

void FenceProxyAsync() {
  std::vector<unsigned char>& view = AsyncView();
  std::memcpy(view.data(), g_block->dynamic_shared, view.size());
  FenceMbarrierInits();
}

void AsyncProxyWrote(const void* p, size_t bytes) {
  const auto* q = static_cast<const unsigned char*>(p);
  std::memcpy(AsyncView().data() + (q - g_block->dynamic_shared), q, bytes);
}

}  // namespace tpserve_emu
