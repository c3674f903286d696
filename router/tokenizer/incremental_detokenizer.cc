#include "router/tokenizer/incremental_detokenizer.h"

#include "absl/strings/str_cat.h"
#include "router/tokenizer/unicode.h"

namespace tpserve {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer* tokenizer, bool skip_special,
                                               bool at_text_start)
    : tokenizer_(tokenizer), skip_special_(skip_special), first_(at_text_start) {}

absl::StatusOr<std::string> IncrementalDetokenizer::Add(int32_t id) {
  if (id < 0 || id >= tokenizer_->vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token id ", id, " is outside the vocabulary [0, ", tokenizer_->vocab_size(), ")"));
  }
  if (skip_special_ && tokenizer_->IsSpecial(id)) return std::string();
  pending_ += tokenizer_->TokenBytes(id, first_);
  first_ = false;
  // Hold back a trailing incomplete sequence; everything before it is final.
  size_t tail = tokenizer_internal::IncompleteTailLength(pending_);
  std::string ready =
      tokenizer_internal::Utf8Lossy(std::string_view(pending_).substr(0, pending_.size() - tail));
  pending_.erase(0, pending_.size() - tail);
  return ready;
}

std::string IncrementalDetokenizer::Finish() {
  std::string rest = tokenizer_internal::Utf8Lossy(pending_);
  pending_.clear();
  return rest;
}

}  // namespace tpserve
