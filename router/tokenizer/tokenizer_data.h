// TokenizerData: everything a Tokenizer needs, as plain data, read from a GGUF
// file's tokenizer.ggml.* metadata or from a Hugging Face tokenizer.json.
//
//   TPS_ASSIGN_OR_RETURN(TokenizerData data, TokenizerDataFromTokenizerJson(path));
//   TPS_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::Create(std::move(data)));
//
// The loaders only parse; Tokenizer::Create validates (ids in range, merges
// naming known tokens) and builds lookup tables.
#ifndef TPSERVE_ROUTER_TOKENIZER_TOKENIZER_DATA_H_
#define TPSERVE_ROUTER_TOKENIZER_TOKENIZER_DATA_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tpserve {

// GGUF token types (tokenizer.ggml.token_type), llama.cpp's numbering.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // special tokens: <|im_start|>, <s>, ...
  kUserDefined = 4,  // added tokens that are not special
  kUnused = 5,
  kByte = 6,  // SentencePiece byte-fallback pieces <0x00>..<0xFF>
};

struct TokenizerData {
  enum class Model {
    kByteLevelBpe,     // GGUF "gpt2": GPT-2 byte-to-unicode alphabet + merge ranks
    kSentencePieceBpe  // GGUF "llama": scores, U+2581 for spaces, byte fallback
  };
  Model model = Model::kByteLevelBpe;

  // Indexed by token id. `tokens` holds the vocabulary strings as stored
  // (byte-level BPE: in the GPT-2 byte alphabet; SentencePiece: with U+2581).
  std::vector<std::string> tokens;
  std::vector<float> scores;           // SentencePiece merge scores; may be empty
  std::vector<TokenType> token_types;  // may be empty (all kNormal)
  // Byte-level BPE merges, highest priority first, each "left right".
  std::vector<std::string> merges;
  // Pre-tokenizer name as GGUF's tokenizer.ggml.pre spells it: "gpt2",
  // "smollm" (= starcoder: single digits, then GPT-2), "llama3"/"llama-bpe",
  // "qwen2". Empty for SentencePiece.
  std::string pre_tokenizer;
  // Byte-level BPE: apply a whole-word vocabulary hit before merging (HF
  // "ignore_merges", Llama-3).
  bool ignore_merges = false;

  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  bool add_bos = false;           // Encode(..., add_special=true) prepends bos
  bool add_space_prefix = false;  // SentencePiece: prepend U+2581 to the text
  std::string chat_template;      // Jinja source, empty when the model has none
};

// Parses a Hugging Face tokenizer.json (model BPE, byte-level or
// SentencePiece-style with byte_fallback). Errors name the file and field.
absl::StatusOr<TokenizerData> TokenizerDataFromTokenizerJson(const std::string& path);

// Same, from the JSON text itself.
absl::StatusOr<TokenizerData> TokenizerDataFromTokenizerJsonText(const std::string& json_text);

// A Hugging Face model directory: its tokenizer.json, plus the chat template
// from chat_template.jinja, chat_template.json or tokenizer_config.json
// (common/hf_chat_template.h).
absl::StatusOr<TokenizerData> TokenizerDataFromHfDirectory(const std::string& dir);

}  // namespace tpserve

#endif  // TPSERVE_ROUTER_TOKENIZER_TOKENIZER_DATA_H_
