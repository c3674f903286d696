// Tokenizer: text <-> token ids for byte-level BPE (GPT-2, SmolLM, Llama-3,
// Qwen2 pre-tokenizers) and SentencePiece-style BPE (scores + byte fallback).
// Special and added tokens in the text are matched before pre-tokenization,
// as Hugging Face tokenizers does. Immutable after Create; thread-safe.
//
//   TPS_ASSIGN_OR_RETURN(TokenizerData data, TokenizerDataFromGguf(path));
//   TPS_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::Create(std::move(data)));
//   TPS_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok.Encode("Hello", false));
//   std::string text = tok.Decode(ids);          // "Hello"
//   int32_t im_end = tok.TokenId("<|im_end|>");  // -1 if absent
#ifndef TPSERVE_ROUTER_TOKENIZER_TOKENIZER_H_
#define TPSERVE_ROUTER_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "router/tokenizer/tokenizer_data.h"

namespace tpserve {

namespace tokenizer_internal {
class TokenizerImpl;
}

struct EncodeOptions {
  // Prepend bos when the model asks for it (TokenizerData::add_bos).
  bool add_special = false;
  // Match special/added token strings ("<|im_end|>") in the text and emit
  // their ids. false: encode them as ordinary text (for untrusted input).
  bool parse_special = true;
};

class Tokenizer {
 public:
  // Validates `data` and builds lookup tables. InvalidArgument when the data
  // is inconsistent (unknown pre-tokenizer, merges naming unknown tokens, ...).
  static absl::StatusOr<Tokenizer> Create(TokenizerData data);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Encodes UTF-8 `text`. InvalidArgument (with the byte offset) when `text`
  // is not valid UTF-8. Special tokens in the text are parsed.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special) const;
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              const EncodeOptions& options) const;

  // Whether Encode with parse_special would match a special/added token
  // string somewhere in `text`.
  bool ContainsSpecial(std::string_view text) const;

  // Decodes ids to text; special tokens appear as their text unless
  // `skip_special`. Byte sequences that are not valid UTF-8 become U+FFFD.
  // Out-of-range ids are InvalidArgument.
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids,
                                     bool skip_special = false) const;

  // The raw bytes token `id` stands for (byte-level alphabet and U+2581
  // undone, <0xAB> pieces as one byte). May be a partial UTF-8 sequence.
  // `first` strips the SentencePiece dummy-prefix space. Requires a valid id.
  std::string TokenBytes(int32_t id, bool first = false) const;

  // Id of the vocabulary string `token` (as stored, e.g. "<|im_end|>"), or -1.
  int32_t TokenId(std::string_view token) const;
  // The stored vocabulary string for `id`. Requires 0 <= id < vocab_size().
  const std::string& TokenText(int32_t id) const;
  bool IsSpecial(int32_t id) const;  // control / user-defined / unknown / unused

  int32_t vocab_size() const;
  int32_t bos_id() const;  // -1 when the model has none
  int32_t eos_id() const;
  int32_t unk_id() const;
  int32_t pad_id() const;
  bool add_bos() const;
  const TokenizerData& data() const;

 private:
  explicit Tokenizer(std::unique_ptr<tokenizer_internal::TokenizerImpl> impl);
  std::unique_ptr<tokenizer_internal::TokenizerImpl> impl_;
};

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_TOKENIZER_TOKENIZER_H_
