#include "router/tokenizer/tokenizer_gguf.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace tpserve {
namespace {

// Optional integer key: `fallback` when absent, an error on a wrong type.
absl::StatusOr<int64_t> IntOr(const GgufFile& f, absl::string_view key, int64_t fallback) {
  if (!f.Has(key)) return fallback;
  return f.GetInt(key);
}

absl::StatusOr<bool> BoolOr(const GgufFile& f, absl::string_view key, bool fallback) {
  if (!f.Has(key)) return fallback;
  return f.GetBool(key);
}

}  // namespace

absl::StatusOr<TokenizerData> TokenizerDataFromGguf(const GgufFile& f) {
  TokenizerData d;
  TPS_ASSIGN_OR_RETURN(absl::string_view model, f.GetString("tokenizer.ggml.model"));
  if (model == "gpt2") {
    d.model = TokenizerData::Model::kByteLevelBpe;
  } else if (model == "llama") {
    d.model = TokenizerData::Model::kSentencePieceBpe;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        f.path(), ": tokenizer.ggml.model \"", model,
        "\" is not supported (supported: gpt2 = byte-level BPE, llama = SentencePiece BPE)"));
  }
  TPS_ASSIGN_OR_RETURN(absl::Span<const absl::string_view> tokens,
                       f.GetStringArray("tokenizer.ggml.tokens"));
  d.tokens.reserve(tokens.size());
  for (absl::string_view t : tokens) d.tokens.emplace_back(t);
  if (f.Has("tokenizer.ggml.token_type")) {
    TPS_ASSIGN_OR_RETURN(std::vector<int64_t> types, f.GetIntArray("tokenizer.ggml.token_type"));
    d.token_types.reserve(types.size());
    for (int64_t t : types) {
      if (t < 0 || t > 6) {
        return absl::InvalidArgumentError(
            absl::StrCat(f.path(), ": tokenizer.ggml.token_type has unknown type ", t));
      }
      d.token_types.push_back(static_cast<TokenType>(t));
    }
  }
  if (f.Has("tokenizer.ggml.scores")) {
    TPS_ASSIGN_OR_RETURN(d.scores, f.GetFloatArray("tokenizer.ggml.scores"));
  }
  if (d.model == TokenizerData::Model::kByteLevelBpe) {
    TPS_ASSIGN_OR_RETURN(absl::Span<const absl::string_view> merges,
                         f.GetStringArray("tokenizer.ggml.merges"));
    d.merges.reserve(merges.size());
    for (absl::string_view m : merges) d.merges.emplace_back(m);
    if (f.Has("tokenizer.ggml.pre")) {
      TPS_ASSIGN_OR_RETURN(absl::string_view pre, f.GetString("tokenizer.ggml.pre"));
      d.pre_tokenizer = std::string(pre);
    }
    // llama.cpp applies Llama-3's whole-word vocabulary hit (HF ignore_merges).
    d.ignore_merges = d.pre_tokenizer == "llama3" || d.pre_tokenizer == "llama-bpe" ||
                      d.pre_tokenizer == "llama-v3";
  }
  TPS_ASSIGN_OR_RETURN(int64_t bos, IntOr(f, "tokenizer.ggml.bos_token_id", -1));
  TPS_ASSIGN_OR_RETURN(int64_t eos, IntOr(f, "tokenizer.ggml.eos_token_id", -1));
  TPS_ASSIGN_OR_RETURN(int64_t unk, IntOr(f, "tokenizer.ggml.unknown_token_id", -1));
  TPS_ASSIGN_OR_RETURN(int64_t pad, IntOr(f, "tokenizer.ggml.padding_token_id", -1));
  const int64_t n = static_cast<int64_t>(d.tokens.size());
  for (int64_t id : {bos, eos, unk, pad}) {
    if (id >= n || id < -1) {
      return absl::InvalidArgumentError(
          absl::StrCat(f.path(), ": special token id ", id, " is outside the vocabulary of ", n));
    }
  }
  d.bos_id = static_cast<int32_t>(bos);
  d.eos_id = static_cast<int32_t>(eos);
  d.unk_id = static_cast<int32_t>(unk);
  d.pad_id = static_cast<int32_t>(pad);
  const bool spm = d.model == TokenizerData::Model::kSentencePieceBpe;
  // llama.cpp's defaults when the keys are absent: SentencePiece adds bos and
  // the dummy-prefix space, byte-level BPE does neither.
  TPS_ASSIGN_OR_RETURN(d.add_bos, BoolOr(f, "tokenizer.ggml.add_bos_token", spm));
  TPS_ASSIGN_OR_RETURN(d.add_space_prefix, BoolOr(f, "tokenizer.ggml.add_space_prefix", spm));
  if (f.Has("tokenizer.chat_template")) {
    TPS_ASSIGN_OR_RETURN(absl::string_view tmpl, f.GetString("tokenizer.chat_template"));
    d.chat_template = std::string(tmpl);
  }
  return d;
}

absl::StatusOr<TokenizerData> TokenizerDataFromGguf(const std::string& path) {
  TPS_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> f, GgufFile::Open(path));
  return TokenizerDataFromGguf(*f);
}

}  // namespace tpserve
