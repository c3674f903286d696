#include "worker/engine/kv_cache_pool.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status.h"

namespace tpserve {

namespace {

absl::Status CheckShape(const KvCacheShape& s) {
  if (s.num_layers <= 0 || s.n_kv_heads <= 0 || s.head_dim <= 0 || s.block_size <= 0) {
    return absl::InvalidArgumentError("KV cache shape has a non-positive dimension");
  }
  if (s.dtype != DType::kF32 && s.dtype != DType::kBF16) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache dtype ", DTypeName(s.dtype), " is not F32 or BF16"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DType> ResolveKvDType(absl::string_view kv_dtype) {
  if (kv_dtype == "auto" || kv_dtype == "bf16") return DType::kBF16;
  if (kv_dtype == "f32") return DType::kF32;
  return absl::InvalidArgumentError(
      absl::StrCat("--kv_dtype must be auto, f32 or bf16; got '", kv_dtype, "'"));
}

void KvCachePool::FreeDeleter::operator()(void* p) const { std::free(p); }

int64_t KvCachePool::BlockBytes(const KvCacheShape& s) {
  return int64_t{2} * s.num_layers * s.block_size * s.n_kv_heads * s.head_dim *
         tpserve::BlockBytes(s.dtype);
}

absl::StatusOr<int> KvCachePool::BlocksForBudget(const KvCacheShape& shape, int64_t budget_bytes) {
  TPS_RETURN_IF_ERROR(CheckShape(shape));
  const int64_t per_block = BlockBytes(shape);
  const int64_t blocks = budget_bytes / per_block;
  if (blocks < 1) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache budget of ", budget_bytes, " bytes holds no block of ", per_block, " bytes"));
  }
  if (blocks > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError("KV cache budget too large");
  }
  return static_cast<int>(blocks);
}

absl::StatusOr<KvCachePool> KvCachePool::Create(const KvCacheShape& shape, int num_blocks) {
  TPS_RETURN_IF_ERROR(CheckShape(shape));
  if (num_blocks <= 0) return absl::InvalidArgumentError("KV cache pool needs at least one block");
  const int64_t blocks = num_blocks;
  KvCachePool pool;
  pool.shape_ = shape;
  pool.num_blocks_ = static_cast<int>(blocks);
  // Uninitialised (pages are touched when written): a step only reads slots
  // it, or an earlier step, wrote.
  const size_t layer_bytes = static_cast<size_t>(blocks) * shape.block_size * shape.n_kv_heads *
                             shape.head_dim * tpserve::BlockBytes(shape.dtype);
  for (int l = 0; l < shape.num_layers; ++l) {
    for (auto* vec : {&pool.k_, &pool.v_}) {
      void* p = std::aligned_alloc(64, (layer_bytes + 63) / 64 * 64);
      if (p == nullptr) return absl::ResourceExhaustedError("KV cache allocation failed");
      vec->emplace_back(p);
    }
  }
  return pool;
}

absl::Status KvCachePool::CheckBlockTable(absl::Span<const int32_t> table,
                                          int64_t num_positions) const {
  return CheckBlockTable(num_blocks_, shape_.block_size, table, num_positions);
}

absl::Status KvCachePool::CheckBlockTable(int num_blocks, int block_size,
                                          absl::Span<const int32_t> table, int64_t num_positions) {
  const int64_t needed = (num_positions + block_size - 1) / block_size;
  if (static_cast<int64_t>(table.size()) < needed) {
    return absl::InvalidArgumentError(absl::StrCat("block table has ", table.size(), " blocks but ",
                                                   num_positions, " positions need ", needed));
  }
  for (int64_t i = 0; i < needed; ++i) {
    if (table[i] < 0 || table[i] >= num_blocks) {
      return absl::InvalidArgumentError(
          absl::StrCat("block id ", table[i], " outside the pool of ", num_blocks));
    }
  }
  return absl::OkStatus();
}

BlockAllocator::BlockAllocator(int num_blocks) : refs_(num_blocks, 0) {
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

absl::StatusOr<std::vector<int32_t>> BlockAllocator::Allocate(int n) {
  if (n < 0 || n > num_free()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache pool exhausted: ", n, " blocks wanted, ", num_free(), " free"));
  }
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(free_.back());
    free_.pop_back();
    refs_[out.back()] = 1;
  }
  return out;
}

void BlockAllocator::Share(int32_t block) {
  TPS_CHECK(block >= 0 && block < static_cast<int32_t>(refs_.size()) && refs_[block] > 0)
      << "sharing unallocated block " << block;
  ++refs_[block];
}

void BlockAllocator::Free(absl::Span<const int32_t> blocks) {
  for (int32_t b : blocks) {
    TPS_CHECK(b >= 0 && b < static_cast<int32_t>(refs_.size()) && refs_[b] > 0)
        << "freeing unallocated block " << b;
    if (--refs_[b] == 0) free_.push_back(b);
  }
}

}  // namespace tpserve
