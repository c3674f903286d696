// The two BPE merge loops behind Tokenizer (internal). Both work on one
// pre-tokenized piece at a time and append token ids.
//
//   ByteLevelBpe: GPT-2 byte alphabet; merges applied lowest rank first
//     (leftmost on ties), as Hugging Face tokenizers' BPE does.
//   SentencePieceBpe: symbols are code points; the adjacent pair whose
//     concatenation is the highest-scoring vocabulary piece merges first
//     (leftmost on ties); leftover symbols not in the vocabulary fall back to
//     <0xAB> byte pieces, then unk — SentencePiece's BPE with byte_fallback.
#ifndef TPSERVE_ROUTER_TOKENIZER_BPE_MODEL_H_
#define TPSERVE_ROUTER_TOKENIZER_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace tpserve::tokenizer_internal {

// GPT-2's reversible byte -> printable code point map, and its inverse.
uint32_t ByteToCodepoint(uint8_t b);
// -1 when `cp` is not in the byte alphabet.
int CodepointToByte(uint32_t cp);

using VocabMap = absl::flat_hash_map<std::string, int32_t>;

class ByteLevelBpe {
 public:
  // `vocab` maps stored token strings to ids; merges are "left right" pairs,
  // highest priority first. Merges whose halves or result are not in the
  // vocabulary are an error (the data is inconsistent).
  static absl::StatusOr<ByteLevelBpe> Create(const VocabMap& vocab,
                                             const std::vector<std::string>& merges,
                                             bool ignore_merges);

  // Encodes the raw bytes of one piece. A byte whose one-character token is
  // missing from the vocabulary (SmolLM2 lacks e.g. 0x04 and 0x06) is
  // dropped, as Hugging Face tokenizers does without an unk token — never
  // mapped to unk, which for SmolLM2 would be <|endoftext|>.
  void Encode(std::string_view piece, const VocabMap& vocab, std::vector<int32_t>* out) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_{};  // token id of each byte's 1-char string
  bool ignore_merges_ = false;
};

class SentencePieceBpe {
 public:
  // `scores[id]` ranks merge results; `byte_ids[b]` is the id of "<0xBB>"
  // (-1 if absent); `mergeable[id]` says whether a pair may merge into id.
  SentencePieceBpe(std::vector<float> scores, std::vector<bool> mergeable,
                   std::array<int32_t, 256> byte_ids, int32_t unk_id)
      : scores_(std::move(scores)),
        mergeable_(std::move(mergeable)),
        byte_ids_(byte_ids),
        unk_id_(unk_id) {}

  // Encodes `text` already in SentencePiece form (spaces as U+2581).
  void Encode(std::string_view text, const VocabMap& vocab, std::vector<int32_t>* out) const;

 private:
  std::vector<float> scores_;
  std::vector<bool> mergeable_;
  std::array<int32_t, 256> byte_ids_;
  int32_t unk_id_;
};

}  // namespace tpserve::tokenizer_internal

#endif  // TPSERVE_ROUTER_TOKENIZER_BPE_MODEL_H_
