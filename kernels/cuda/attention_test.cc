// Parity of cuda::PagedAttention (flash-style, any prefill/decode mix) and
// cuda::PagedAttentionDecode (split-KV) with cpu::PagedAttention on random
// ragged batches: odd head dims, GQA ratios 1..4, block sizes that do not
// divide the context, shuffled block tables.
//
// Tolerance: NMSE < 1e-8 against the CPU twin. Both use f32 with expf; the
// difference is summation order and the online-softmax rescaling (~1e-12
// expected), so 1e-8 still catches any wrong key, head or mask (those give
// errors of order 1e-2 and above). The tensor-core prefill kernel rounds Q,
// K, V and the probabilities to bf16 (2^-9 relative each; with these
// uniform(-2, 2) inputs the output NMSE is ~3e-5): NMSE < 2e-4.
//
// bf16 KV cache: the same bits in both caches (the values rounded once with
// F32ToBF16), widened exactly by both backends, so the bounds above hold
// unchanged against cpu::PagedAttention on the bf16 cache. Stronger: each
// CUDA launcher on the bf16 cache gives the same bits as on an f32 cache
// holding the widened values (the tensor-core kernel's own rounding of an
// f32 cache to bf16 yields those very bits), which pins down every element
// offset and the widening itself.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <numeric>
#include <vector>

#include "formats/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/test_util.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/test_support.h"

namespace tpserve::kernels::cuda {
namespace {

using cpu::Nmse;
using cpu::Rng;

constexpr double kAttentionNmse = 1e-8;
constexpr double kTensorCoreNmse = 2e-4;

struct Batch {
  int n_heads, n_kv_heads, head_dim, block_size, num_blocks, max_blocks_per_seq;
  std::vector<int32_t> q_lens, start_pos, cu_q_lens, block_tables;
  std::vector<float> q, k_cache, v_cache;  // the cache when kv_dtype is kF32
  DType kv_dtype = DType::kF32;
  std::vector<uint16_t> k_bf16, v_bf16;  // the cache when kv_dtype is kBF16
  int total_q = 0;
  int max_context = 0;
};

// `b` with a bf16 cache: its f32 cache rounded (F32ToBF16, as KvCacheWrite
// stores it).
Batch WithBf16Cache(Batch b) {
  b.kv_dtype = DType::kBF16;
  for (float f : b.k_cache) b.k_bf16.push_back(F32ToBF16(f));
  for (float f : b.v_cache) b.v_bf16.push_back(F32ToBF16(f));
  return b;
}

// `b` with an f32 cache holding the widened values of its bf16 cache.
Batch WithWidenedCache(Batch b) {
  b.kv_dtype = DType::kF32;
  for (size_t i = 0; i < b.k_bf16.size(); ++i) {
    b.k_cache[i] = BF16ToF32(b.k_bf16[i]);
    b.v_cache[i] = BF16ToF32(b.v_bf16[i]);
  }
  return b;
}

// fixed_q_len > 0 gives every sequence that many queries; its keys start
// at a position drawn from [min_start, max_start].
Batch MakeBatch(Rng& rng, int num_seqs, int head_dim, int group, bool decode_only, int max_start,
                int fixed_q_len = 0, int min_start = 0) {
  Batch b;
  b.n_kv_heads = rng.Int(1, 3);
  b.n_heads = b.n_kv_heads * group;
  b.head_dim = head_dim;
  b.block_size = rng.Int(0, 1) == 0 ? 16 : rng.Int(1, 13);
  b.cu_q_lens.push_back(0);
  int max_ctx = 0;
  for (int s = 0; s < num_seqs; ++s) {
    const int q_len = fixed_q_len > 0                     ? fixed_q_len
                      : decode_only || rng.Int(0, 2) == 0 ? 1
                                                          : rng.Int(2, 70);
    const int start = rng.Int(min_start, max_start);
    b.q_lens.push_back(q_len);
    b.start_pos.push_back(start);
    b.cu_q_lens.push_back(b.cu_q_lens.back() + q_len);
    max_ctx = std::max(max_ctx, start + q_len);
  }
  b.total_q = b.cu_q_lens.back();
  b.max_context = max_ctx;
  b.max_blocks_per_seq = (max_ctx + b.block_size - 1) / b.block_size;
  b.num_blocks = b.max_blocks_per_seq * num_seqs + 3;
  // Each sequence gets distinct blocks in shuffled order.
  std::vector<int32_t> ids(b.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng.gen());
  b.block_tables.assign(static_cast<size_t>(num_seqs) * b.max_blocks_per_seq, 0);
  for (size_t i = 0; i < b.block_tables.size(); ++i) b.block_tables[i] = ids[i];
  const size_t cache = static_cast<size_t>(b.num_blocks) * b.block_size * b.n_kv_heads * head_dim;
  b.k_cache = rng.Floats(cache, -2.0f, 2.0f);
  b.v_cache = rng.Floats(cache);
  b.q = rng.Floats(static_cast<size_t>(b.total_q) * b.n_heads * head_dim, -2.0f, 2.0f);
  return b;
}

PagedAttentionParams HostParams(const Batch& b) {
  PagedAttentionParams p;
  p.num_seqs = static_cast<int>(b.q_lens.size());
  p.max_blocks_per_seq = b.max_blocks_per_seq;
  p.n_heads = b.n_heads;
  p.n_kv_heads = b.n_kv_heads;
  p.head_dim = b.head_dim;
  p.block_size = b.block_size;
  p.num_blocks = b.num_blocks;
  p.kv_dtype = b.kv_dtype;
  p.scale = 1.0f / std::sqrt(static_cast<float>(b.head_dim));
  return p;
}

std::vector<float> CpuAttention(const Batch& b) {
  std::vector<float> out(b.q.size());
  PagedAttentionParams p = HostParams(b);
  p.q = b.q.data();
  const bool bf16 = b.kv_dtype == DType::kBF16;
  p.k_cache = bf16 ? static_cast<const void*>(b.k_bf16.data()) : b.k_cache.data();
  p.v_cache = bf16 ? static_cast<const void*>(b.v_bf16.data()) : b.v_cache.data();
  p.out = out.data();
  p.block_tables = b.block_tables.data();
  p.cu_q_lens = b.cu_q_lens.data();
  p.start_pos = b.start_pos.data();
  EXPECT_TRUE(cpu::PagedAttention(p, Stream{}).ok());
  return out;
}

enum class Launcher { kFlash, kDecode, kTensorCore };

// Runs the CUDA attention launcher `which` on `b`. `copy` (kTensorCore):
// PagedAttentionPrefill writes its output there as a Bf16Copy, over a buffer
// of NaN bits; the f32 output returned should stay zero. `partition_tokens`
// (kDecode): PagedAttentionDecode's override, 0 for its own choice.
std::vector<float> CudaAttention(const Batch& b, Launcher which,
                                 std::vector<uint16_t>* copy = nullptr, int partition_tokens = 0) {
  const bool bf16 = b.kv_dtype == DType::kBF16;
  DeviceBuffer<float> q = ToDevice(b.q);
  // One of the two cache pairs is empty (a null device pointer).
  DeviceBuffer<float> kc = ToDevice(bf16 ? std::vector<float>{} : b.k_cache),
                      vc = ToDevice(bf16 ? std::vector<float>{} : b.v_cache);
  DeviceBuffer<uint16_t> kb = ToDevice(b.k_bf16), vb = ToDevice(b.v_bf16);
  DeviceBuffer<float> out = DeviceZeros<float>(b.q.size());
  DeviceBuffer<int32_t> tables = ToDevice(b.block_tables), cu = ToDevice(b.cu_q_lens),
                        start = ToDevice(b.start_pos);
  PagedAttentionParams p = HostParams(b);
  p.q = q.data();
  p.k_cache = bf16 ? static_cast<const void*>(kb.data()) : kc.data();
  p.v_cache = bf16 ? static_cast<const void*>(vb.data()) : vc.data();
  p.out = out.data();
  p.block_tables = tables.data();
  p.cu_q_lens = cu.data();
  p.start_pos = start.data();
  if (which == Launcher::kDecode) {
    const int64_t ws = DecodeAttentionWorkspaceFloats(p.num_seqs, p.n_heads, p.head_dim,
                                                      b.max_context, partition_tokens);
    DeviceBuffer<float> workspace = DeviceZeros<float>(static_cast<size_t>(ws));
    EXPECT_TRUE(
        PagedAttentionDecode(p, b.max_context, workspace.data(), ws, Stream{}, partition_tokens)
            .ok());
    return ToHostVector(out);
  }
  if (copy != nullptr) {
    DeviceBuffer<uint16_t> c = ToDevice(std::vector<uint16_t>(b.q.size(), uint16_t{0xFFFF}));
    EXPECT_TRUE(PagedAttentionPrefill(p, Stream{}, {.data = c.data()}).ok());
    *copy = ToHostVector(c);
    return ToHostVector(out);
  }
  EXPECT_TRUE((which == Launcher::kTensorCore ? PagedAttentionPrefill(p, Stream{})
                                              : PagedAttention(p, Stream{}))
                  .ok());
  return ToHostVector(out);
}

struct Config {
  int head_dim, group;
};
const Config kConfigs[] = {{64, 3}, {40, 1}, {128, 4}, {96, 2}, {256, 1}, {17 * 2, 2}};

TEST(CudaPagedAttentionParity, MixedPrefillAndDecode) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(21);
  for (const Config& c : kConfigs) {
    const Batch b = MakeBatch(rng, rng.Int(1, 5), c.head_dim, c.group, /*decode_only=*/false,
                              /*max_start=*/300);
    SCOPED_TRACE(testing::Message()
                 << "head_dim=" << c.head_dim << " heads=" << b.n_heads << "/" << b.n_kv_heads
                 << " block_size=" << b.block_size << " total_q=" << b.total_q);
    EXPECT_LT(Nmse(CudaAttention(b, Launcher::kFlash), CpuAttention(b)), kAttentionNmse);
  }
}

TEST(CudaPagedAttentionParity, LongPrefillChunk) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(22);
  // Two sequences of 700 new tokens after up to 500 cached: more query tiles
  // than block slots, so each block walks several tiles.
  const Batch b =
      MakeBatch(rng, 2, 64, 3, /*decode_only=*/false, /*max_start=*/500, /*fixed_q_len=*/700);
  EXPECT_LT(Nmse(CudaAttention(b, Launcher::kFlash), CpuAttention(b)), kAttentionNmse);
}

// Query tiles of 64 rows and key tiles of 64: 100-token chunks after up to
// 150 cached tokens cross both, next to single-token (decode) rows; GQA
// ratios 1-4, every supported head dim, and 40 (f32 fallback, exact bound).
TEST(CudaPagedAttentionTensorCoreParity, PrefillChunksAndDecodeRows) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(24);
  const Config configs[] = {{64, 3}, {128, 4}, {96, 2}, {32, 1}, {80, 2}, {40, 1}};
  for (const Config& c : configs) {
    for (bool mixed : {false, true}) {
      const Batch b = MakeBatch(rng, mixed ? 3 : 2, c.head_dim, c.group, /*decode_only=*/false,
                                /*max_start=*/150, /*fixed_q_len=*/mixed ? 0 : 100);
      SCOPED_TRACE(testing::Message()
                   << "head_dim=" << c.head_dim << " heads=" << b.n_heads << "/" << b.n_kv_heads
                   << " block_size=" << b.block_size << " total_q=" << b.total_q);
      const double nmse = Nmse(CudaAttention(b, Launcher::kTensorCore), CpuAttention(b));
      EXPECT_LT(nmse, c.head_dim == 40 ? kAttentionNmse : kTensorCoreNmse);
      std::printf("tensor-core attention head_dim=%d total_q=%d: NMSE %.2e\n", c.head_dim,
                  b.total_q, nmse);
    }
  }
}

// More than 16 query tiles of 64 (kTileSlots blocks per head and sequence):
// each block takes several, alternate rounds in reverse slot order, on both
// caches (the bf16 one through the double-buffered cp.async tiles).
TEST(CudaPagedAttentionTensorCoreParity, LongPrefillTakesSeveralRoundsOfTiles) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(26);
  const Batch b =
      MakeBatch(rng, 1, 64, 3, /*decode_only=*/false, /*max_start=*/40, /*fixed_q_len=*/1100);
  const std::vector<float> want = CpuAttention(b);
  const std::vector<float> got = CudaAttention(b, Launcher::kTensorCore);
  EXPECT_LT(Nmse(got, want), kTensorCoreNmse);
  const Batch bf16 = WithBf16Cache(b);
  EXPECT_EQ(CudaAttention(bf16, Launcher::kTensorCore),
            CudaAttention(WithWidenedCache(bf16), Launcher::kTensorCore));
  EXPECT_LT(Nmse(CudaAttention(bf16, Launcher::kTensorCore), CpuAttention(bf16)), kTensorCoreNmse);
}

// With a Bf16Copy, PagedAttentionPrefill writes its output as the O
// projection's bf16 copy: each value the f32 output rounded to nearest even
// (the CPU's F32ToBF16), on the tensor-core kernel (head dims 64, 96) and
// the f32 fallback (40), both caches; p.out untouched. A row length that is
// not a multiple of 32 is refused.
TEST(CudaPagedAttentionTensorCoreParity, Bf16CopyIsTheOutputRounded) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(27);
  for (const Config& c : {Config{64, 2}, Config{96, 1}, Config{40, 4}}) {
    Batch b = MakeBatch(rng, 2, c.head_dim, c.group, /*decode_only=*/false, /*max_start=*/90,
                        /*fixed_q_len=*/80);
    for (bool bf16_cache : {false, true}) {
      if (bf16_cache) b = WithBf16Cache(b);
      SCOPED_TRACE(testing::Message() << "head_dim=" << c.head_dim << " heads=" << b.n_heads
                                      << " bf16 cache=" << bf16_cache);
      const std::vector<float> f32 = CudaAttention(b, Launcher::kTensorCore);
      std::vector<uint16_t> want(f32.size()), got;
      for (size_t i = 0; i < f32.size(); ++i) want[i] = F32ToBF16(f32[i]);
      const std::vector<float> untouched = CudaAttention(b, Launcher::kTensorCore, &got);
      EXPECT_EQ(got, want);
      EXPECT_EQ(untouched, std::vector<float>(f32.size(), 0.0f));
    }
  }
  PagedAttentionParams p{.n_heads = 1, .n_kv_heads = 1, .head_dim = 40, .block_size = 16};
  uint16_t one = 0;
  EXPECT_EQ(PagedAttentionPrefill(p, Stream{}, {.data = &one}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CudaPagedAttentionDecodeParity, SplitKvAcrossPartitions) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(23);
  std::vector<Config> configs(std::begin(kConfigs), std::end(kConfigs));
  // GQA groups above the decode kernel's 8 query heads per block: 8 + 4 and
  // two full blocks per KV head.
  configs.push_back({32, 12});
  configs.push_back({64, 16});
  // 66 is not a multiple of the 4 dims a lane owns: per-element loads.
  configs.push_back({66, 2});
  for (const Config& c : configs) {
    // Contexts up to ~1200 tokens: 1..5 partitions of kDecodePartitionTokens.
    const Batch b = MakeBatch(rng, rng.Int(1, 6), c.head_dim, c.group, /*decode_only=*/true,
                              /*max_start=*/1200);
    SCOPED_TRACE(testing::Message()
                 << "head_dim=" << c.head_dim << " max_context=" << b.max_context);
    const std::vector<float> want = CpuAttention(b);
    EXPECT_LT(Nmse(CudaAttention(b, Launcher::kDecode), want), kAttentionNmse);
    EXPECT_LT(Nmse(CudaAttention(b, Launcher::kFlash), want), kAttentionNmse);
  }
}

// A lone sequence's long context, cut into DecodePartitionTokens's 64- or
// 128-token partitions, into 256-token ones (the length before 2026-12-07)
// and (300 tokens) into 7-token ones (the override): each against the CPU
// reference. GQA groups of 8, 4 and 1 query heads; f32 and bf16 caches.
TEST(CudaPagedAttentionDecodeParity, LoneSequenceInShortPartitions) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(37);
  const Config configs[] = {{64, 8}, {128, 4}, {64, 1}};
  for (const Config& c : configs) {
    for (int context : {300, 4100}) {
      Batch b = MakeBatch(rng, 1, c.head_dim, c.group, /*decode_only=*/true, context - 1,
                          /*fixed_q_len=*/0, /*min_start=*/context - 1);
      ASSERT_EQ(b.max_context, context);
      if (c.group == 4) b = WithBf16Cache(b);
      EXPECT_EQ(DecodePartitionTokens(1, context), context <= 4096 ? 64 : 128);
      const std::vector<float> want = CpuAttention(b);
      for (int partition_tokens : {0, kDecodePartitionTokens, 7}) {
        if (partition_tokens == 7 && context > 1000) continue;  // 586 partitions: slow emulated
        SCOPED_TRACE(testing::Message()
                     << "head_dim=" << c.head_dim << " group=" << c.group << " context=" << context
                     << " partition_tokens=" << partition_tokens);
        EXPECT_LT(Nmse(CudaAttention(b, Launcher::kDecode, nullptr, partition_tokens), want),
                  kAttentionNmse);
      }
    }
  }
}

// Block ids outside the pool (a corrupt table) cannot be reported from the
// device: both kernels skip those keys. The decode kernel against the flash
// kernel on tables with one scattered bad id per sequence and, in sequence
// 0, a whole partition's worth of bad ids (every key of a block masked, and
// of a partition when the context reaches past it).
TEST(CudaPagedAttentionDecodeParity, BadBlockIdsAreSkippedLikeTheFlashKernel) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(29);
  const Config configs[] = {{64, 3}, {128, 4}, {256, 8}, {66, 2}};
  for (const Config& c : configs) {
    Batch b = MakeBatch(rng, rng.Int(2, 4), c.head_dim, c.group, /*decode_only=*/true,
                        /*max_start=*/700);
    const int seqs = static_cast<int>(b.q_lens.size());
    for (int s = 0; s < seqs; ++s) {
      const int used = (b.start_pos[s] + b.block_size) / b.block_size;  // blocks holding keys
      int32_t* row = &b.block_tables[static_cast<size_t>(s) * b.max_blocks_per_seq];
      row[rng.Int(0, used - 1)] = b.num_blocks + rng.Int(0, 5);
      if (s == 0) {
        for (int i = 0; i < std::min(used, kDecodePartitionTokens / b.block_size); ++i) row[i] = -1;
      }
    }
    SCOPED_TRACE(testing::Message() << "head_dim=" << c.head_dim << " block_size=" << b.block_size
                                    << " max_context=" << b.max_context);
    const std::vector<float> got = CudaAttention(b, Launcher::kDecode);
    for (float f : got) ASSERT_TRUE(std::isfinite(f));
    EXPECT_LT(Nmse(got, CudaAttention(b, Launcher::kFlash)), kAttentionNmse);
  }
}

// The decode step with RoPE and the KV-cache write fused into the attention
// against RopeKvWrite then PagedAttentionDecode: the same output bits and
// the same cache bits. Head dims 64, 128, 256 (vector loads), 80 (lanes past
// head_dim) and 66 (per-element loads); GQA groups 1-12 (12: two blocks per
// KV head, one of which stores); both pairings, llama3 scaling; f32 and bf16
// caches; contexts over several partitions.
TEST(CudaPagedAttentionDecodeParity, FusedRopeGivesTheUnfusedBits) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(31);
  const Config configs[] = {{64, 3}, {128, 4}, {256, 8}, {80, 2}, {66, 1}, {64, 12}};
  int round = 0;
  for (const Config& c : configs) {
    for (DType kv_dtype : {DType::kF32, DType::kBF16}) {
      Batch b = MakeBatch(rng, rng.Int(1, 5), c.head_dim, c.group, /*decode_only=*/true,
                          /*max_start=*/700);
      if (kv_dtype == DType::kBF16) b = WithBf16Cache(b);
      const bool bf16 = kv_dtype == DType::kBF16;
      const int seqs = static_cast<int>(b.q_lens.size());
      const int hd = b.head_dim;
      const int q_dim = b.n_heads * hd;
      const int kv_dim = b.n_kv_heads * hd;
      const int qkv_dim = q_dim + 2 * kv_dim;
      const std::vector<float> qkv = rng.Floats(static_cast<size_t>(seqs) * qkv_dim, -2.0f, 2.0f);
      std::vector<int64_t> slots(seqs);
      for (int s = 0; s < seqs; ++s) {
        const int pos = b.start_pos[s];
        slots[s] = int64_t{b.block_tables[static_cast<size_t>(s) * b.max_blocks_per_seq +
                                          pos / b.block_size]} *
                       b.block_size +
                   pos % b.block_size;
      }
      RopeParams rope{.n_heads = b.n_heads,
                      .n_kv_heads = b.n_kv_heads,
                      .head_dim = hd,
                      .q_stride = qkv_dim,
                      .k_stride = qkv_dim,
                      .theta = 10000.0f,
                      .neox = round % 2 == 0};
      if (round % 3 == 1) {
        rope.scaling = {
            .type = RopeScaling::Type::kLlama3, .factor = 8.0f, .original_max_position = 64};
      }
      ++round;
      SCOPED_TRACE(testing::Message() << "head_dim=" << hd << " heads=" << b.n_heads << "/"
                                      << b.n_kv_heads << " bf16=" << bf16 << " neox=" << rope.neox
                                      << " max_context=" << b.max_context);
      // Runs one decode step on fresh device copies: {output, k cache, v cache}.
      auto run = [&](bool fused) {
        DeviceBuffer<float> d_qkv = ToDevice(qkv);
        DeviceBuffer<float> kc = ToDevice(bf16 ? std::vector<float>{} : b.k_cache),
                            vc = ToDevice(bf16 ? std::vector<float>{} : b.v_cache);
        DeviceBuffer<uint16_t> kb = ToDevice(b.k_bf16), vb = ToDevice(b.v_bf16);
        DeviceBuffer<float> out = DeviceZeros<float>(static_cast<size_t>(seqs) * q_dim);
        DeviceBuffer<int32_t> tables = ToDevice(b.block_tables), cu = ToDevice(b.cu_q_lens),
                              start = ToDevice(b.start_pos);
        DeviceBuffer<int64_t> d_slots = ToDevice(slots);
        void* k_cache = bf16 ? static_cast<void*>(kb.data()) : kc.data();
        void* v_cache = bf16 ? static_cast<void*>(vb.data()) : vc.data();
        PagedAttentionParams p = HostParams(b);
        p.q = d_qkv.data();
        p.q_stride = qkv_dim;
        p.k_cache = k_cache;
        p.v_cache = v_cache;
        p.out = out.data();
        p.block_tables = tables.data();
        p.cu_q_lens = cu.data();
        p.start_pos = start.data();
        DecodeRopeKvWrite f{.rope = rope,
                            .kv = {.k = d_qkv.data() + q_dim,
                                   .v = d_qkv.data() + q_dim + kv_dim,
                                   .k_cache = k_cache,
                                   .v_cache = v_cache,
                                   .kv_dtype = kv_dtype,
                                   .slot_mapping = d_slots.data(),
                                   .tokens = seqs,
                                   .n_kv_heads = b.n_kv_heads,
                                   .head_dim = hd,
                                   .block_size = b.block_size,
                                   .num_blocks = b.num_blocks,
                                   .k_stride = qkv_dim,
                                   .v_stride = qkv_dim}};
        f.rope.q = d_qkv.data();
        f.rope.k = d_qkv.data() + q_dim;
        f.rope.positions = start.data();
        f.rope.tokens = seqs;
        const int64_t ws = DecodeAttentionWorkspaceFloats(seqs, b.n_heads, hd, b.max_context);
        DeviceBuffer<float> workspace = DeviceZeros<float>(static_cast<size_t>(ws));
        if (fused) {
          EXPECT_TRUE(
              PagedAttentionDecode(p, b.max_context, workspace.data(), ws, f, Stream{}).ok());
        } else {
          EXPECT_TRUE(RopeKvWrite(f.rope, f.kv, Stream{}).ok());
          EXPECT_TRUE(PagedAttentionDecode(p, b.max_context, workspace.data(), ws, Stream{}).ok());
        }
        std::vector<float> k_bits, v_bits;  // the caches as floats (bf16 bits widened)
        if (bf16) {
          for (uint16_t h : ToHostVector(kb)) k_bits.push_back(BF16ToF32(h));
          for (uint16_t h : ToHostVector(vb)) v_bits.push_back(BF16ToF32(h));
        } else {
          k_bits = ToHostVector(kc);
          v_bits = ToHostVector(vc);
        }
        return std::vector<std::vector<float>>{ToHostVector(out), k_bits, v_bits};
      };
      const std::vector<std::vector<float>> want = run(false), got = run(true);
      EXPECT_EQ(got[0], want[0]) << "attention output";
      EXPECT_EQ(got[1], want[1]) << "k cache";
      EXPECT_EQ(got[2], want[2]) << "v cache";
      EXPECT_TRUE(std::any_of(got[0].begin(), got[0].end(), [](float f) { return f != 0.0f; }));
    }
  }
}

// Every launcher on a bf16 cache: against the CPU on the same bf16 cache,
// and bit-identical to itself on the widened f32 cache. Head dims: 64 and
// 128 (vector loads of 2 and 4 bf16 per lane in decode, the 16-byte tile
// copies in the tensor-core kernel), 80 (lanes past head_dim), 66 (decode's
// per-element loads; the tensor-core launcher falls back to the f32-math
// kernel) and 256 (8 bf16 = 16 bytes per lane).
TEST(CudaPagedAttentionBf16Cache, MatchesCpuAndWidenedF32Cache) {
  TPS_SKIP_WITHOUT_CUDA();
  Rng rng(25);
  const Config configs[] = {{64, 3}, {128, 4}, {80, 2}, {66, 1}, {256, 1}};
  for (const Config& c : configs) {
    for (bool decode : {false, true}) {
      const Batch b = WithBf16Cache(MakeBatch(rng, rng.Int(1, 4), c.head_dim, c.group, decode,
                                              /*max_start=*/decode ? 600 : 150));
      const Batch widened = WithWidenedCache(b);
      SCOPED_TRACE(testing::Message() << "head_dim=" << c.head_dim << " heads=" << b.n_heads << "/"
                                      << b.n_kv_heads << " block_size=" << b.block_size
                                      << " decode=" << decode << " max_context=" << b.max_context);
      const std::vector<float> want = CpuAttention(b);
      const Launcher which[] = {Launcher::kFlash, Launcher::kTensorCore, Launcher::kDecode};
      for (Launcher l : which) {
        if (l == Launcher::kDecode && !decode) continue;
        SCOPED_TRACE(testing::Message() << "launcher " << static_cast<int>(l));
        const std::vector<float> got = CudaAttention(b, l);
        const bool tensor_core =
            l == Launcher::kTensorCore && c.head_dim != 66 && c.head_dim != 256;
        EXPECT_LT(Nmse(got, want), tensor_core ? kTensorCoreNmse : kAttentionNmse);
        EXPECT_EQ(got, CudaAttention(widened, l));
      }
    }
  }
}

}  // namespace
}  // namespace tpserve::kernels::cuda
