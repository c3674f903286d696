// KvCachePool: this rank's paged KV cache, sized from a memory budget.
//
// Layout (agreed with kernels/ops.h, PagedAttentionParams): per layer, K and
// V each are one array
//   [num_blocks][block_size][n_kv_heads][head_dim]  in shape.dtype
// where n_kv_heads is this rank's KV heads and dtype is F32 or BF16 (2 bytes
// per element: the same budget holds twice the blocks). The router's block manager owns
// block ids and reference counts (several sequences may list the same block:
// prefix sharing); the pool only stores and validates. BlockAllocator is a
// small ref-counted allocator for callers without a router (tpserve-run,
// tests).
//
//   TPS_ASSIGN_OR_RETURN(KvCachePool pool,
//       KvCachePool::Create(shape, *KvCachePool::BlocksForBudget(shape, 256 << 20)));
//   void* k0 = pool.k(0);  // elements of shape.dtype
#ifndef TPSERVE_WORKER_ENGINE_KV_CACHE_POOL_H_
#define TPSERVE_WORKER_ENGINE_KV_CACHE_POOL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "formats/dtype.h"

namespace tpserve {

struct KvCacheShape {
  int num_layers = 0;
  int n_kv_heads = 0;  // this rank's KV heads
  int head_dim = 0;
  int block_size = 16;        // tokens per block
  DType dtype = DType::kF32;  // element type: kF32 or kBF16
};

// The KV cache element type that `kv_dtype` ("auto", "f32" or "bf16"; the
// worker's and tpserve-run's --kv_dtype) asks for: auto is BF16 on both
// backends (cpu and cuda store and read either type, the same bits).
// INVALID_ARGUMENT naming the accepted values for any other string.
[[nodiscard]] absl::StatusOr<DType> ResolveKvDType(absl::string_view kv_dtype);

class KvCachePool {
 public:
  // Bytes one block takes over all layers, K and V.
  static int64_t BlockBytes(const KvCacheShape& shape);
  // How many blocks of `shape` fit in `budget_bytes`; RESOURCE_EXHAUSTED when
  // not even one does, INVALID_ARGUMENT for a bad shape. Ranks with uneven KV
  // shards size with the largest shard so that every rank has the same block
  // count (the router's block ids are global).
  [[nodiscard]] static absl::StatusOr<int> BlocksForBudget(const KvCacheShape& shape,
                                                           int64_t budget_bytes);
  // A pool of exactly `num_blocks` blocks.
  [[nodiscard]] static absl::StatusOr<KvCachePool> Create(const KvCacheShape& shape,
                                                          int num_blocks);

  const KvCacheShape& shape() const { return shape_; }
  int num_blocks() const { return num_blocks_; }
  int block_size() const { return shape_.block_size; }
  DType dtype() const { return shape_.dtype; }
  void* k(int layer) { return k_[layer].get(); }
  void* v(int layer) { return v_[layer].get(); }

  // OK when `block_table` names valid blocks and covers `num_positions`
  // positions; INVALID_ARGUMENT / RESOURCE_EXHAUSTED otherwise.
  [[nodiscard]] absl::Status CheckBlockTable(absl::Span<const int32_t> block_table,
                                             int64_t num_positions) const;
  // The same check for a pool of `num_blocks` blocks of `block_size` tokens
  // held elsewhere (a device KV cache).
  [[nodiscard]] static absl::Status CheckBlockTable(int num_blocks, int block_size,
                                                    absl::Span<const int32_t> block_table,
                                                    int64_t num_positions);

 private:
  struct FreeDeleter {
    void operator()(void* p) const;
  };
  KvCacheShape shape_;
  int num_blocks_ = 0;
  std::vector<std::unique_ptr<void, FreeDeleter>> k_, v_;
};

// Reference-counted block ids in [0, num_blocks).
class BlockAllocator {
 public:
  explicit BlockAllocator(int num_blocks);
  // `n` fresh blocks with count 1, or RESOURCE_EXHAUSTED (nothing taken).
  [[nodiscard]] absl::StatusOr<std::vector<int32_t>> Allocate(int n);
  // Another holder of `block` (prefix sharing).
  void Share(int32_t block);
  // Drops one reference per block; a block returns to the pool at zero.
  void Free(absl::Span<const int32_t> blocks);
  int num_free() const { return static_cast<int>(free_.size()); }
  int ref_count(int32_t block) const { return refs_[block]; }

 private:
  std::vector<int> refs_;
  std::vector<int32_t> free_;
};

}  // namespace tpserve

#endif  // TPSERVE_WORKER_ENGINE_KV_CACHE_POOL_H_
