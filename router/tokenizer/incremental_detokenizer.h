// IncrementalDetokenizer: turns a stream of generated token ids into text
// deltas that are always complete, valid UTF-8. A multi-byte character split
// across tokens is held back until its last byte arrives; bytes that can never
// become valid UTF-8 are emitted as U+FFFD. With at_text_start, the
// concatenation of all deltas plus Finish() equals Tokenizer::Decode of all
// ids.
//
//   // Generated tokens continue the prompt: keep a leading space.
//   IncrementalDetokenizer detok(&tokenizer, /*skip_special=*/true);
//   for (int32_t id : generated) {
//     TPS_ASSIGN_OR_RETURN(std::string delta, detok.Add(id));
//     Stream(delta);  // may be empty while a character is incomplete
//   }
//   Stream(detok.Finish());
#ifndef TPSERVE_ROUTER_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
#define TPSERVE_ROUTER_TOKENIZER_INCREMENTAL_DETOKENIZER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "router/tokenizer/tokenizer.h"

namespace tpserve {

class IncrementalDetokenizer {
 public:
  // `tokenizer` must outlive this object. `skip_special` drops control tokens
  // (eos, <|im_end|>) from the text. `at_text_start`: the ids start a text
  // (SentencePiece: the first token's dummy-prefix space is dropped, as Decode
  // does); false for a continuation such as generated tokens after a prompt.
  explicit IncrementalDetokenizer(const Tokenizer* tokenizer, bool skip_special = false,
                                  bool at_text_start = false);

  // Feeds one id; returns the newly completed text (possibly empty).
  // InvalidArgument for an out-of-range id (the stream state is unchanged).
  absl::StatusOr<std::string> Add(int32_t id);

  // Ends the stream: any held-back incomplete bytes become U+FFFD.
  std::string Finish();

  // Bytes currently held back (0..3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  bool first_;
  std::string pending_;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
