// KV-cache block manager: the router owns block ids, the workers own the memory.
//
// The KV cache is `num_blocks` fixed-size blocks of `block_size` token slots.
// Each sequence has a block table (block ids covering its tokens, in order).
// Blocks are reference counted so that sequences can share prompt prefixes:
// a *full* block whose KV has been computed is registered in a prefix cache
// under the hash of (parent block's hash, its block_size token ids). A new
// sequence whose tokens start with cached full blocks reuses them (ref count
// +1) and skips their prefill. Cached blocks nobody references stay cached
// until the space is needed, then the least recently released goes first.
//
// Shared blocks are never written: a sequence only writes positions at or
// beyond its cached prefix, which lie in blocks of its own, and a registered
// block is always full and computed.
//
//   BlockManager bm(/*num_blocks=*/1024, /*block_size=*/16);
//   PrefixMatch hit = bm.FindCachedPrefix(prompt);        // no side effects
//   TPS_RETURN_IF_ERROR(bm.Allocate(seq, prompt.size(), &hit));  // new seq
//   ... step runs tokens [hit.num_tokens, prompt.size()) ...
//   bm.CacheComputedBlocks(seq, prompt, prompt.size());   // after the step
//   TPS_RETURN_IF_ERROR(bm.Allocate(seq, prompt.size() + 1));   // decode slot
//   bm.Free(seq);                                         // finished
//
// Not thread-safe: the scheduler drives it from one thread.
#ifndef TPSERVE_ROUTER_KV_BLOCK_MANAGER_H_
#define TPSERVE_ROUTER_KV_BLOCK_MANAGER_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"

namespace tpserve {

// The longest run of cached full blocks at the start of a token sequence, as
// found by FindCachedPrefix. Valid until the block manager is next modified.
struct PrefixMatch {
  std::vector<int32_t> blocks;   // cached block ids, in order
  std::vector<uint64_t> hashes;  // chain hash of each block in `blocks`
  int32_t num_tokens = 0;        // blocks.size() * block_size
  int32_t num_queried = 0;       // tokens looked up (for the hit-rate metric)
};

// Counters and gauges for metrics; prefix numbers are in tokens.
struct BlockManagerStats {
  int32_t num_blocks = 0;
  int32_t num_used_blocks = 0;    // referenced by at least one sequence
  int32_t num_cached_blocks = 0;  // registered in the prefix cache (used or not)
  int64_t prefix_queries_tokens = 0;
  int64_t prefix_hits_tokens = 0;
  int64_t num_evictions = 0;  // cached blocks reclaimed for new allocations
};

class BlockManager {
 public:
  // `num_blocks` > 0 and `block_size` > 0 (the workers report both).
  BlockManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_cache = true);

  BlockManager(const BlockManager&) = delete;
  BlockManager& operator=(const BlockManager&) = delete;

  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return num_blocks_; }

  // Longest cached prefix of `tokens`, in whole blocks, leaving at least one
  // token uncached (the model must run the last token to sample the next).
  // Pure lookup: no reference is taken and no counter moves.
  PrefixMatch FindCachedPrefix(absl::Span<const int32_t> tokens) const;

  // Makes `seq_id`'s block table cover `num_tokens` token slots. For a
  // sequence the manager does not know yet this starts it, first taking a
  // reference on `prefix`'s blocks (nullptr: no prefix) and counting the
  // prefix query and hits. All or nothing: RESOURCE_EXHAUSTED, with no change,
  // when free plus evictable blocks are too few. Never shrinks a table.
  [[nodiscard]] absl::Status Allocate(uint64_t seq_id, int32_t num_tokens,
                                      const PrefixMatch* prefix = nullptr);

  // Available blocks Allocate(seq_id, num_tokens, prefix) would consume: new
  // blocks plus evictable cached blocks of `prefix` it would revive.
  int32_t NumBlocksToTake(uint64_t seq_id, int32_t num_tokens,
                          const PrefixMatch* prefix = nullptr) const;
  // True when Allocate(seq_id, num_tokens) would succeed.
  bool CanAllocate(uint64_t seq_id, int32_t num_tokens) const {
    return NumBlocksToTake(seq_id, num_tokens) <= NumAvailableBlocks();
  }

  // Registers `seq_id`'s full blocks within the first `num_computed` tokens of
  // `tokens` (its whole token sequence so far) in the prefix cache. Call only
  // once their KV is written, i.e. after the step that computed them.
  void CacheComputedBlocks(uint64_t seq_id, absl::Span<const int32_t> tokens, int32_t num_computed);

  // Drops the sequence's references. Unreferenced cached blocks stay
  // reusable (evictable, LRU); other unreferenced blocks become free. No-op for
  // an unknown sequence.
  void Free(uint64_t seq_id);

  bool HasSequence(uint64_t seq_id) const { return seqs_.contains(seq_id); }
  // Empty for an unknown sequence.
  absl::Span<const int32_t> BlockTable(uint64_t seq_id) const;

  // Blocks an allocation can take now: free plus evictable cached ones.
  int32_t NumAvailableBlocks() const;
  // Blocks needed to hold `num_tokens` tokens.
  int32_t BlocksFor(int32_t num_tokens) const {
    return (num_tokens + block_size_ - 1) / block_size_;
  }
  // Fraction of blocks referenced by some sequence, in [0, 1].
  double UsageRatio() const;
  BlockManagerStats stats() const;

  // Full consistency check (reference counts against block tables, free/LRU
  // lists disjoint and complete, cache map). O(num_blocks); for tests.
  absl::Status CheckInvariants() const;

 private:
  struct SeqBlocks {
    std::vector<int32_t> blocks;
    int32_t num_hashed = 0;  // leading blocks whose chain hash is known
    uint64_t last_hash = 0;  // chain hash of blocks[num_hashed - 1]
  };
  struct BlockInfo {
    int32_t ref_count = 0;
    bool cached = false;  // registered in cache_ under `hash`
    uint64_t hash = 0;
    uint64_t parent_hash = 0;  // for collision checks
    int32_t lru_prev = -1;     // links while cached and unreferenced
    int32_t lru_next = -1;
  };

  int32_t TakeBlock();  // from free list, else evicts LRU head
  void AddRef(int32_t block);
  void Release(int32_t block);
  void LruRemove(int32_t block);
  void LruPushBack(int32_t block);
  bool BlockHoldsTokens(int32_t block, uint64_t parent_hash,
                        absl::Span<const int32_t> tokens) const;

  const int32_t num_blocks_;
  const int32_t block_size_;
  const bool enable_prefix_cache_;

  std::vector<BlockInfo> blocks_;
  std::vector<int32_t> block_tokens_;  // num_blocks * block_size, for cached blocks
  std::vector<int32_t> free_;          // unreferenced, uncached; a stack
  int32_t lru_head_ = -1;              // unreferenced cached blocks, oldest first
  int32_t lru_tail_ = -1;
  int32_t lru_size_ = 0;
  absl::flat_hash_map<uint64_t, int32_t> cache_;  // chain hash -> block
  absl::flat_hash_map<uint64_t, SeqBlocks> seqs_;
  int64_t prefix_queries_tokens_ = 0;
  int64_t prefix_hits_tokens_ = 0;
  int64_t num_evictions_ = 0;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_KV_BLOCK_MANAGER_H_
