#include "router/kv/block_manager.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace tpserve {
namespace {

constexpr uint64_t kRootHash = 0x7470736572766531ULL;  // parent of a first block

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Hash of a full block given its parent's hash: identifies the whole prefix.
// 64 bits; the cache also compares the stored tokens and parent hash, so a
// collision needs two equal-looking parents, not just two equal hashes.
uint64_t ChainHash(uint64_t parent, absl::Span<const int32_t> tokens) {
  uint64_t h = SplitMix64(parent);
  for (int32_t t : tokens) h = SplitMix64(h ^ static_cast<uint32_t>(t));
  return h;
}

}  // namespace

BlockManager::BlockManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_cache)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      enable_prefix_cache_(enable_prefix_cache),
      blocks_(num_blocks) {
  TPS_CHECK_GT(num_blocks, 0);
  TPS_CHECK_GT(block_size, 0);
  if (enable_prefix_cache_) {
    block_tokens_.resize(static_cast<size_t>(num_blocks) * block_size);
  }
  free_.reserve(num_blocks);
  // A stack handing out 0, 1, 2, ... first: deterministic and easy to read.
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

PrefixMatch BlockManager::FindCachedPrefix(absl::Span<const int32_t> tokens) const {
  PrefixMatch match;
  match.num_queried = static_cast<int32_t>(tokens.size());
  if (!enable_prefix_cache_ || tokens.empty()) return match;
  const size_t max_blocks = (tokens.size() - 1) / block_size_;
  uint64_t parent = kRootHash;
  for (size_t i = 0; i < max_blocks; ++i) {
    absl::Span<const int32_t> chunk = tokens.subspan(i * block_size_, block_size_);
    const uint64_t h = ChainHash(parent, chunk);
    auto it = cache_.find(h);
    if (it == cache_.end() || !BlockHoldsTokens(it->second, parent, chunk)) break;
    match.blocks.push_back(it->second);
    match.hashes.push_back(h);
    parent = h;
  }
  match.num_tokens = static_cast<int32_t>(match.blocks.size()) * block_size_;
  return match;
}

bool BlockManager::BlockHoldsTokens(int32_t block, uint64_t parent_hash,
                                    absl::Span<const int32_t> tokens) const {
  const BlockInfo& info = blocks_[block];
  if (!info.cached || info.parent_hash != parent_hash) return false;
  const int32_t* stored = &block_tokens_[static_cast<size_t>(block) * block_size_];
  return std::equal(tokens.begin(), tokens.end(), stored);
}

int32_t BlockManager::NumBlocksToTake(uint64_t seq_id, int32_t num_tokens,
                                      const PrefixMatch* prefix) const {
  auto it = seqs_.find(seq_id);
  int32_t have = 0;
  int32_t revived = 0;
  if (it != seqs_.end()) {
    have = static_cast<int32_t>(it->second.blocks.size());
  } else if (prefix != nullptr) {
    have = static_cast<int32_t>(prefix->blocks.size());
    for (int32_t b : prefix->blocks) revived += blocks_[b].ref_count == 0 ? 1 : 0;
  }
  return std::max(0, BlocksFor(num_tokens) - have) + revived;
}

absl::Status BlockManager::Allocate(uint64_t seq_id, int32_t num_tokens,
                                    const PrefixMatch* prefix) {
  if (num_tokens < 0) return absl::InvalidArgumentError("negative token count");
  auto it = seqs_.find(seq_id);
  const bool is_new = it == seqs_.end();
  if (!is_new && prefix != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("sequence ", seq_id, " already has blocks; a prefix applies only at start"));
  }
  int32_t available = NumAvailableBlocks();
  int32_t have = 0;
  if (is_new && prefix != nullptr) {
    if (prefix->blocks.size() != prefix->hashes.size()) {
      return absl::InvalidArgumentError("prefix match has mismatched blocks and hashes");
    }
    for (size_t i = 0; i < prefix->blocks.size(); ++i) {
      const int32_t b = prefix->blocks[i];
      if (b < 0 || b >= num_blocks_ || !blocks_[b].cached || blocks_[b].hash != prefix->hashes[i]) {
        return absl::FailedPreconditionError(absl::StrCat(
            "stale prefix match for sequence ", seq_id, ": block ", b, " left the prefix cache"));
      }
      if (blocks_[b].ref_count == 0) --available;  // leaves the evictable list
    }
    have = static_cast<int32_t>(prefix->blocks.size());
  } else if (!is_new) {
    have = static_cast<int32_t>(it->second.blocks.size());
  }
  const int32_t needed = std::max(0, BlocksFor(num_tokens) - have);
  if (needed > available) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache full: sequence ", seq_id, " needs ", needed, " more block(s) of ", block_size_,
        " tokens but ", available, " of ", num_blocks_, " are available"));
  }
  if (is_new) {
    it = seqs_.try_emplace(seq_id).first;
    SeqBlocks& seq = it->second;
    if (prefix != nullptr) {
      for (int32_t b : prefix->blocks) AddRef(b);
      seq.blocks = prefix->blocks;
      seq.num_hashed = static_cast<int32_t>(prefix->blocks.size());
      seq.last_hash = prefix->hashes.empty() ? 0 : prefix->hashes.back();
      if (enable_prefix_cache_) {
        prefix_queries_tokens_ += prefix->num_queried;
        prefix_hits_tokens_ += prefix->num_tokens;
      }
    }
  }
  SeqBlocks& seq = it->second;
  for (int32_t i = 0; i < needed; ++i) {
    const int32_t b = TakeBlock();
    AddRef(b);
    seq.blocks.push_back(b);
  }
  return absl::OkStatus();
}

void BlockManager::CacheComputedBlocks(uint64_t seq_id, absl::Span<const int32_t> tokens,
                                       int32_t num_computed) {
  if (!enable_prefix_cache_) return;
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return;
  SeqBlocks& seq = it->second;
  const size_t computed = std::min(static_cast<size_t>(std::max(num_computed, 0)), tokens.size());
  const int32_t full = std::min(static_cast<int32_t>(computed / block_size_),
                                static_cast<int32_t>(seq.blocks.size()));
  for (int32_t i = seq.num_hashed; i < full; ++i) {
    const uint64_t parent = i == 0 ? kRootHash : seq.last_hash;
    absl::Span<const int32_t> chunk =
        tokens.subspan(static_cast<size_t>(i) * block_size_, block_size_);
    const uint64_t h = ChainHash(parent, chunk);
    const int32_t b = seq.blocks[i];
    BlockInfo& info = blocks_[b];
    // A duplicate of a block already cached (two sequences computed the same
    // prefix at once) stays private and is freed normally.
    if (!info.cached && !cache_.contains(h)) {
      cache_.emplace(h, b);
      info.cached = true;
      info.hash = h;
      info.parent_hash = parent;
      std::copy(chunk.begin(), chunk.end(), &block_tokens_[static_cast<size_t>(b) * block_size_]);
    }
    seq.last_hash = h;
    seq.num_hashed = i + 1;
  }
}

void BlockManager::Free(uint64_t seq_id) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return;
  // Last block first: it becomes the older LRU entry, so a shared prompt's
  // leading blocks outlive its tail.
  const std::vector<int32_t>& table = it->second.blocks;
  for (auto b = table.rbegin(); b != table.rend(); ++b) Release(*b);
  seqs_.erase(it);
}

absl::Span<const int32_t> BlockManager::BlockTable(uint64_t seq_id) const {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return {};
  return it->second.blocks;
}

int32_t BlockManager::NumAvailableBlocks() const {
  return static_cast<int32_t>(free_.size()) + lru_size_;
}

double BlockManager::UsageRatio() const {
  return static_cast<double>(num_blocks_ - NumAvailableBlocks()) / num_blocks_;
}

BlockManagerStats BlockManager::stats() const {
  BlockManagerStats s;
  s.num_blocks = num_blocks_;
  s.num_used_blocks = num_blocks_ - NumAvailableBlocks();
  s.num_cached_blocks = static_cast<int32_t>(cache_.size());
  s.prefix_queries_tokens = prefix_queries_tokens_;
  s.prefix_hits_tokens = prefix_hits_tokens_;
  s.num_evictions = num_evictions_;
  return s;
}

int32_t BlockManager::TakeBlock() {
  if (!free_.empty()) {
    const int32_t b = free_.back();
    free_.pop_back();
    return b;
  }
  const int32_t b = lru_head_;
  TPS_CHECK_GE(b, 0) << "no block to take; Allocate checks availability first";
  LruRemove(b);
  BlockInfo& info = blocks_[b];
  cache_.erase(info.hash);
  info.cached = false;
  ++num_evictions_;
  return b;
}

void BlockManager::AddRef(int32_t block) {
  BlockInfo& info = blocks_[block];
  if (info.ref_count == 0 && info.cached) LruRemove(block);
  ++info.ref_count;
}

void BlockManager::Release(int32_t block) {
  BlockInfo& info = blocks_[block];
  TPS_CHECK_GT(info.ref_count, 0) << "block " << block << " released twice";
  if (--info.ref_count > 0) return;
  if (info.cached) {
    LruPushBack(block);
  } else {
    free_.push_back(block);
  }
}

void BlockManager::LruRemove(int32_t block) {
  BlockInfo& info = blocks_[block];
  if (info.lru_prev >= 0) {
    blocks_[info.lru_prev].lru_next = info.lru_next;
  } else {
    lru_head_ = info.lru_next;
  }
  if (info.lru_next >= 0) {
    blocks_[info.lru_next].lru_prev = info.lru_prev;
  } else {
    lru_tail_ = info.lru_prev;
  }
  info.lru_prev = info.lru_next = -1;
  --lru_size_;
}

void BlockManager::LruPushBack(int32_t block) {
  BlockInfo& info = blocks_[block];
  info.lru_prev = lru_tail_;
  info.lru_next = -1;
  if (lru_tail_ >= 0) {
    blocks_[lru_tail_].lru_next = block;
  } else {
    lru_head_ = block;
  }
  lru_tail_ = block;
  ++lru_size_;
}

absl::Status BlockManager::CheckInvariants() const {
  std::vector<int32_t> refs(num_blocks_, 0);
  for (const auto& [id, seq] : seqs_) {
    std::vector<int32_t> sorted = seq.blocks;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
      return absl::InternalError(absl::StrCat("sequence ", id, " holds a block twice"));
    }
    for (int32_t b : seq.blocks) {
      if (b < 0 || b >= num_blocks_) return absl::InternalError("block id out of range");
      ++refs[b];
    }
    if (seq.num_hashed > static_cast<int32_t>(seq.blocks.size())) {
      return absl::InternalError("more hashed blocks than blocks");
    }
  }
  std::vector<int> where(num_blocks_, 0);  // 1 free, 2 lru
  for (int32_t b : free_) {
    if (where[b] != 0) return absl::InternalError(absl::StrCat("block ", b, " free twice"));
    where[b] = 1;
  }
  int32_t walked = 0;
  for (int32_t b = lru_head_, prev = -1; b >= 0; prev = b, b = blocks_[b].lru_next) {
    if (where[b] != 0 || blocks_[b].lru_prev != prev) {
      return absl::InternalError(absl::StrCat("LRU list corrupt at block ", b));
    }
    where[b] = 2;
    if (++walked > num_blocks_) return absl::InternalError("LRU list has a cycle");
  }
  if (walked != lru_size_) return absl::InternalError("LRU size mismatch");
  int32_t cached = 0;
  for (int32_t b = 0; b < num_blocks_; ++b) {
    const BlockInfo& info = blocks_[b];
    if (info.ref_count != refs[b]) {
      return absl::InternalError(
          absl::StrCat("block ", b, " ref count ", info.ref_count, " but ", refs[b], " holders"));
    }
    const int expected_where = info.ref_count > 0 ? 0 : (info.cached ? 2 : 1);
    if (where[b] != expected_where) {
      return absl::InternalError(absl::StrCat("block ", b, " is on the wrong list"));
    }
    if (info.cached) {
      ++cached;
      auto it = cache_.find(info.hash);
      if (it == cache_.end() || it->second != b) {
        return absl::InternalError(absl::StrCat("cached block ", b, " missing from the map"));
      }
    }
  }
  if (cached != static_cast<int32_t>(cache_.size())) {
    return absl::InternalError("prefix cache map has stale entries");
  }
  return absl::OkStatus();
}

}  // namespace tpserve
