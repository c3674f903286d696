// Pre-tokenizers for byte-level BPE: split text into the pieces BPE merges
// within, exactly as the models' regexes do, by hand-written scanners (no
// regex engine handles \p{L}/\p{N} here; see unicode.h for the classes).
//
//   kGpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   kSmolLm: every \p{N} is its own piece first, then kGpt2 on the rest
//            (llama.cpp's "smollm"/"starcoder"; HF Digits(individual_digits)
//            followed by ByteLevel)
//   kLlama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   kQwen2:  kLlama3 with \p{N} instead of \p{N}{1,3}
//
//   PreTokenizer pre = PreTokenizer::kSmolLm;
//   std::vector<std::string_view> pieces;
//   PreTokenize(pre, "Hi 42!", &pieces);  // "Hi", " ", "4", "2", "!"
#ifndef TPSERVE_ROUTER_TOKENIZER_PRE_TOKENIZER_H_
#define TPSERVE_ROUTER_TOKENIZER_PRE_TOKENIZER_H_

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tpserve::tokenizer_internal {

enum class PreTokenizer { kGpt2, kSmolLm, kLlama3, kQwen2 };

// Maps a GGUF tokenizer.ggml.pre name ("gpt2", "smollm", "starcoder",
// "llama3"/"llama-bpe", "qwen2", "default") to a scanner; InvalidArgument
// naming the supported ones otherwise.
absl::StatusOr<PreTokenizer> PreTokenizerFromName(std::string_view name);

// Appends the pieces of VALID UTF-8 `text` to `out` (views into `text`).
void PreTokenize(PreTokenizer kind, std::string_view text, std::vector<std::string_view>* out);

}  // namespace tpserve::tokenizer_internal

#endif  // TPSERVE_ROUTER_TOKENIZER_PRE_TOKENIZER_H_
