// Launchers for KvCacheWrite and PagedAttention over the paged KV layout of
// kernels/ops.h, f32 or bf16 K/V. Bodies (scores, softmax, weighted V sum,
// op_kernels.h): the AVX-512 build (attention_avx512.cc) from kAvxVnni on
// CPUs with AVX-512 (isa.h), the AVX2 build (attention_avx2.cc) from kAvx2,
// else the portable one (ops_impl.inc).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/op_kernels.h"
#include "kernels/cpu/thread_pool.h"

namespace tpserve::kernels::cpu {

namespace {

bool IsKvDType(DType t) { return t == DType::kF32 || t == DType::kBF16; }

// dst[i] = bf16(src[i]), round to nearest even.
void StoreBf16(const float* src, void* dst, int64_t n) {
  uint16_t* out = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) out[i] = F32ToBF16(src[i]);
}

}  // namespace

absl::Status KvCacheWrite(const KvCacheWriteParams& p, const Stream& stream) {
  if (p.k == nullptr || p.v == nullptr || p.k_cache == nullptr || p.v_cache == nullptr ||
      p.slot_mapping == nullptr || p.tokens < 0 || p.n_kv_heads <= 0 || p.head_dim <= 0 ||
      p.block_size <= 0 || p.num_blocks < 0) {
    return absl::InvalidArgumentError("KvCacheWrite: bad params");
  }
  if (!IsKvDType(p.kv_dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("KvCacheWrite: KV cache dtype ",
                                                   DTypeName(p.kv_dtype), " is not F32 or BF16"));
  }
  const int64_t num_slots = int64_t{p.num_blocks} * p.block_size;
  for (int t = 0; t < p.tokens; ++t) {
    if (p.slot_mapping[t] >= num_slots) {
      return absl::InvalidArgumentError(absl::StrCat("KvCacheWrite: slot ", p.slot_mapping[t],
                                                     " of token ", t, " is past the pool (",
                                                     num_slots, " slots)"));
    }
  }
  const int64_t row = int64_t{p.n_kv_heads} * p.head_dim;
  const int64_t k_stride = p.k_stride != 0 ? p.k_stride : row;
  const int64_t v_stride = p.v_stride != 0 ? p.v_stride : row;
  const bool bf16 = p.kv_dtype == DType::kBF16;
  const int64_t elem_bytes = bf16 ? 2 : 4;
  ParallelFor(stream.pool, p.tokens, 64, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t slot = p.slot_mapping[t];
      if (slot < 0) continue;
      void* k_dst = static_cast<char*>(p.k_cache) + slot * row * elem_bytes;
      void* v_dst = static_cast<char*>(p.v_cache) + slot * row * elem_bytes;
      if (bf16) {
        StoreBf16(p.k + t * k_stride, k_dst, row);
        StoreBf16(p.v + t * v_stride, v_dst, row);
      } else {
        std::memcpy(k_dst, p.k + t * k_stride, sizeof(float) * row);
        std::memcpy(v_dst, p.v + t * v_stride, sizeof(float) * row);
      }
    }
  });
  return absl::OkStatus();
}

namespace {

absl::Status ValidateAttention(const PagedAttentionParams& p) {
  if (p.q == nullptr || p.k_cache == nullptr || p.v_cache == nullptr || p.out == nullptr ||
      p.block_tables == nullptr || p.cu_q_lens == nullptr || p.start_pos == nullptr) {
    return absl::InvalidArgumentError("PagedAttention: a pointer is null");
  }
  if (!IsKvDType(p.kv_dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: KV cache dtype ",
                                                   DTypeName(p.kv_dtype), " is not F32 or BF16"));
  }
  if (p.num_seqs < 0 || p.n_heads <= 0 || p.n_kv_heads <= 0 || p.n_heads % p.n_kv_heads != 0 ||
      p.head_dim <= 0 || p.block_size <= 0 || p.max_blocks_per_seq < 0) {
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: bad shape heads=", p.n_heads,
                                                   "/", p.n_kv_heads, " head_dim=", p.head_dim,
                                                   " block_size=", p.block_size));
  }
  if (p.cu_q_lens[0] != 0) return absl::InvalidArgumentError("PagedAttention: cu_q_lens[0] != 0");
  for (int s = 0; s < p.num_seqs; ++s) {
    const int q_len = p.cu_q_lens[s + 1] - p.cu_q_lens[s];
    if (q_len < 0 || p.start_pos[s] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("PagedAttention: sequence ", s, " has a negative length or start"));
    }
    const int64_t ctx = int64_t{p.start_pos[s]} + q_len;
    const int64_t blocks = (ctx + p.block_size - 1) / p.block_size;
    if (blocks > p.max_blocks_per_seq) {
      return absl::InvalidArgumentError(absl::StrCat("PagedAttention: sequence ", s, " needs ",
                                                     blocks, " blocks, table holds ",
                                                     p.max_blocks_per_seq));
    }
    const int32_t* table = p.block_tables + int64_t{s} * p.max_blocks_per_seq;
    for (int64_t b = 0; b < blocks; ++b) {
      if (table[b] < 0 || table[b] >= p.num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("PagedAttention: sequence ", s, " block ", b,
                                                       " id ", table[b], " outside [0, ",
                                                       p.num_blocks, ")"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PagedAttention(const PagedAttentionParams& p, const Stream& stream) {
  if (absl::Status s = ValidateAttention(p); !s.ok()) return s;
  const int64_t total_q = p.cu_q_lens[p.num_seqs];
  if (total_q == 0) return absl::OkStatus();
  const int group = p.n_heads / p.n_kv_heads;
  const int hd = p.head_dim;
  // Items cover a query row and a whole GQA group, so each K/V row is read
  // once per group. Decode rows (their sequence has one query this step)
  // give too few items when the batch is small, so their segments
  // (op_kernels.h) are then spread over several items whose partial results
  // are merged below: every thread works and K/V still stream once per group
  // (SmolLM2 decode at ctx 1024, 1 thread CPU time: 72 -> 56 us per layer
  // against one item per query head, which read each K/V row three times).
  // How a row is cut into items changes no result (same segments, same merge
  // order), so this may depend on the batch and the thread count.
  constexpr int kMaxParts = 16;
  const int threads = stream.pool != nullptr ? stream.pool->num_threads() : 1;
  const int64_t target_items = 4 * threads;
  const int64_t base_items = total_q * p.n_kv_heads;
  const int splits_wanted = base_items >= target_items
                                ? 1
                                : static_cast<int>(std::min<int64_t>(
                                      kMaxParts, (target_items + base_items - 1) / base_items));
  // Decode rows: sequences with one query row this step.
  auto decode = [&](int s) { return p.cu_q_lens[s + 1] - p.cu_q_lens[s] == 1; };
  auto segments_of = [](int n_ctx) { return (n_ctx + kAttentionSegment - 1) / kAttentionSegment; };

  struct Merge {
    int64_t row;
    int head_begin;
    int segments;
    float* partial;
  };
  std::vector<AttentionItem> items;
  std::vector<Merge> merges;
  // Partial results of split rows; the caller thread's buffer is reused
  // across launches (no per-layer allocation).
  const int64_t seg_floats = int64_t{group} * (hd + 2);
  int64_t partial_floats = 0;
  for (int s = 0; s < p.num_seqs; ++s) {
    const int segments = segments_of(p.start_pos[s] + 1);
    if (decode(s) && std::min(segments, splits_wanted) > 1) {
      partial_floats += int64_t{p.n_kv_heads} * segments * seg_floats;
    }
  }
  thread_local std::vector<float> partials;
  if (partials.size() < static_cast<size_t>(partial_floats)) partials.resize(partial_floats);
  float* next_partial = partials.data();
  // Prefill rows: items of up to kRowTile consecutive rows per KV head (the
  // AVX2 and AVX-512 builds transpose each K segment once per item for all
  // its rows, attention_simd.inc), fewer where that would give fewer than
  // target_items items.
  constexpr int kRowTile = 16;
  for (int s = 0; s < p.num_seqs; ++s) {
    if (decode(s)) continue;
    const int q_len = p.cu_q_lens[s + 1] - p.cu_q_lens[s];
    const int tile = static_cast<int>(
        std::clamp<int64_t>(int64_t{q_len} * p.n_kv_heads / target_items, 1, kRowTile));
    for (int r = 0; r < q_len; r += tile) {
      const int rows = std::min(tile, q_len - r);
      const int n_ctx = p.start_pos[s] + r + 1;
      for (int h = 0; h < p.n_heads; h += group) {
        items.push_back({s, p.cu_q_lens[s] + r, h, h + group, n_ctx, 0,
                         segments_of(n_ctx + rows - 1), nullptr, rows});
      }
    }
  }
  for (int s = 0; s < p.num_seqs; ++s) {
    if (!decode(s)) continue;
    const int64_t row = p.cu_q_lens[s];
    const int n_ctx = p.start_pos[s] + 1;
    const int segments = segments_of(n_ctx);
    const int parts = std::min(segments, splits_wanted);
    for (int h = 0; h < p.n_heads; h += group) {
      if (parts == 1) {
        items.push_back({s, row, h, h + group, n_ctx, 0, segments, nullptr});
        continue;
      }
      merges.push_back({row, h, segments, next_partial});
      for (int part = 0; part < parts; ++part) {
        const int seg_begin = segments * part / parts;
        const int seg_end = segments * (part + 1) / parts;
        items.push_back({s, row, h, h + group, n_ctx, seg_begin, seg_end,
                         next_partial + seg_begin * seg_floats});
      }
      next_partial += segments * seg_floats;
    }
  }

  const Isa isa = ActiveIsa();
  const bool use_avx512 = isa >= Isa::kAvxVnni && HasAvx512();
  auto* attend = use_avx512 ? avx512::Attend : isa >= Isa::kAvx2 ? avx2::Attend : portable::Attend;
  auto* merge = use_avx512          ? avx512::MergeSegments
                : isa >= Isa::kAvx2 ? avx2::MergeSegments
                                    : portable::MergeSegments;
  // Items are claimed one at a time, the costliest (most rows x context)
  // first: prefill items differ in cost by up to the prompt length, and the
  // pool's few contiguous chunks would leave one thread the late rows.
  std::stable_sort(items.begin(), items.end(), [](const AttentionItem& a, const AttentionItem& b) {
    // Keys attended (every item covers a whole GQA group).
    const auto cost = [](const AttentionItem& i) {
      return i.partial != nullptr ? int64_t{i.seg_end - i.seg_begin} * kAttentionSegment
                                  : int64_t{i.rows} * (i.n_ctx + (i.rows - 1) / 2);
    };
    return cost(a) > cost(b);
  });
  std::atomic<int64_t> next{0};
  const int64_t n_items = static_cast<int64_t>(items.size());
  ParallelFor(stream.pool, std::min<int64_t>(threads, n_items), 1, [&](int64_t, int64_t) {
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n_items;) {
      attend(p, items[i]);
    }
  });
  for (const Merge& m : merges) {
    merge(m.partial, m.segments, group, hd,
          p.out + m.row * int64_t{p.n_heads} * hd + int64_t{m.head_begin} * hd);
  }
  return absl::OkStatus();
}

}  // namespace tpserve::kernels::cpu
