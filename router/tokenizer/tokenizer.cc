#include "router/tokenizer/tokenizer.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status.h"
#include "router/tokenizer/bpe_model.h"
#include "router/tokenizer/pre_tokenizer.h"
#include "router/tokenizer/unicode.h"

namespace tpserve {
namespace tokenizer_internal {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581

class TokenizerImpl {
 public:
  TokenizerData data;
  VocabMap vocab;
  std::vector<bool> special;  // matched in text before pre-tokenization
  // Special token strings grouped by first byte, longest first.
  std::array<std::vector<int32_t>, 256> special_by_byte;
  std::optional<ByteLevelBpe> byte_bpe;
  std::optional<SentencePieceBpe> spm;
  PreTokenizer pre = PreTokenizer::kGpt2;
  std::vector<std::string> decoded;  // raw bytes of every token

  absl::Status Init();
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              const EncodeOptions& options) const;
  void EncodeFragment(std::string_view text, bool after_special, std::vector<int32_t>* out) const;
  std::string ComputeBytes(int32_t id) const;
};

absl::Status TokenizerImpl::Init() {
  const int32_t n = static_cast<int32_t>(data.tokens.size());
  if (n == 0) return absl::InvalidArgumentError("tokenizer has an empty vocabulary");
  if (!data.token_types.empty() && data.token_types.size() != data.tokens.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token_types has ", data.token_types.size(), " entries for ", n, " tokens"));
  }
  if (!data.scores.empty() && data.scores.size() != data.tokens.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("scores has ", data.scores.size(), " entries for ", n, " tokens"));
  }
  for (int32_t* id : {&data.bos_id, &data.eos_id, &data.unk_id, &data.pad_id}) {
    if (*id >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat("special token id ", *id, " is outside the vocabulary of ", n));
    }
    if (*id < 0) *id = -1;
  }
  if (data.token_types.empty()) data.token_types.assign(n, TokenType::kNormal);
  vocab.reserve(n);
  special.assign(n, false);
  for (int32_t i = 0; i < n; ++i) {
    vocab.try_emplace(data.tokens[i], i);  // first id wins on duplicates
    TokenType t = data.token_types[i];
    if ((t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown) &&
        !data.tokens[i].empty()) {
      special[i] = true;
      special_by_byte[static_cast<uint8_t>(data.tokens[i][0])].push_back(i);
    }
  }
  for (auto& list : special_by_byte) {
    std::stable_sort(list.begin(), list.end(), [&](int32_t a, int32_t b) {
      return data.tokens[a].size() > data.tokens[b].size();
    });
  }
  if (data.model == TokenizerData::Model::kByteLevelBpe) {
    TPS_ASSIGN_OR_RETURN(pre, PreTokenizerFromName(data.pre_tokenizer));
    TPS_ASSIGN_OR_RETURN(ByteLevelBpe b,
                         ByteLevelBpe::Create(vocab, data.merges, data.ignore_merges));
    byte_bpe.emplace(std::move(b));
  } else {
    std::vector<float> scores = data.scores;
    if (scores.empty()) scores.assign(n, 0.0f);
    std::vector<bool> mergeable(n, true);
    std::array<int32_t, 256> byte_ids;
    byte_ids.fill(-1);
    for (int32_t i = 0; i < n; ++i) {
      TokenType t = data.token_types[i];
      // SentencePiece never merges into control, unused or byte pieces.
      mergeable[i] =
          t == TokenType::kNormal || t == TokenType::kUserDefined || t == TokenType::kUndefined;
      const std::string& s = data.tokens[i];
      if (s.size() == 6 && s.rfind("<0x", 0) == 0 && s[5] == '>') {
        int v = 0;
        bool ok = true;
        for (int k = 3; k < 5; ++k) {
          char c = s[k];
          int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
          if (d < 0) ok = false;
          v = v * 16 + d;
        }
        if (ok && byte_ids[v] < 0) byte_ids[v] = i;
      }
    }
    spm.emplace(std::move(scores), std::move(mergeable), byte_ids, data.unk_id);
  }
  decoded.resize(n);
  for (int32_t i = 0; i < n; ++i) decoded[i] = ComputeBytes(i);
  return absl::OkStatus();
}

std::string TokenizerImpl::ComputeBytes(int32_t id) const {
  const std::string& s = data.tokens[id];
  TokenType t = data.token_types[id];
  if (special[id]) return s;  // added tokens decode to their text
  std::string out;
  if (data.model == TokenizerData::Model::kByteLevelBpe) {
    if (!ValidateUtf8(s).ok()) return s;
    for (size_t i = 0; i < s.size();) {
      size_t len;
      uint32_t cp = DecodeUtf8(s, i, &len);
      int b = CodepointToByte(cp);
      if (b >= 0) {
        out.push_back(static_cast<char>(b));
      } else {
        out.append(s, i, len);
      }
      i += len;
    }
    return out;
  }
  if (t == TokenType::kByte && s.size() == 6) {
    out.push_back(static_cast<char>(std::stoi(s.substr(3, 2), nullptr, 16)));
    return out;
  }
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, kSpmSpace.size(), kSpmSpace) == 0) {
      out.push_back(' ');
      i += kSpmSpace.size();
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

void TokenizerImpl::EncodeFragment(std::string_view text, bool after_special,
                                   std::vector<int32_t>* out) const {
  if (byte_bpe) {
    std::vector<std::string_view> pieces;
    PreTokenize(pre, text, &pieces);
    for (std::string_view p : pieces) byte_bpe->Encode(p, vocab, out);
    return;
  }
  std::string s;
  s.reserve(text.size() + 3 * 8);
  if (data.add_space_prefix && after_special) s.append(kSpmSpace);
  for (char c : text) {
    if (c == ' ') {
      s.append(kSpmSpace);
    } else {
      s.push_back(c);
    }
  }
  spm->Encode(s, vocab, out);
}

absl::StatusOr<std::vector<int32_t>> TokenizerImpl::Encode(std::string_view text,
                                                           const EncodeOptions& options) const {
  TPS_RETURN_IF_ERROR(ValidateUtf8(text));
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (options.add_special && data.add_bos && data.bos_id >= 0) out.push_back(data.bos_id);
  bool after_special = true;  // SentencePiece: dummy prefix at start and after specials
  size_t start = 0;
  if (options.parse_special) {
    for (size_t i = 0; i < text.size();) {
      int32_t hit = -1;
      for (int32_t id : special_by_byte[static_cast<uint8_t>(text[i])]) {
        const std::string& s = data.tokens[id];
        if (text.compare(i, s.size(), s) == 0) {
          hit = id;
          break;
        }
      }
      if (hit < 0) {
        ++i;
        continue;
      }
      if (i > start) {
        EncodeFragment(text.substr(start, i - start), after_special, &out);
      }
      out.push_back(hit);
      after_special = true;
      i += data.tokens[hit].size();
      start = i;
    }
  }
  if (start < text.size()) EncodeFragment(text.substr(start), after_special, &out);
  return out;
}

}  // namespace tokenizer_internal

using tokenizer_internal::TokenizerImpl;

absl::StatusOr<Tokenizer> Tokenizer::Create(TokenizerData data) {
  auto impl = std::make_unique<TokenizerImpl>();
  impl->data = std::move(data);
  TPS_RETURN_IF_ERROR(impl->Init());
  return Tokenizer(std::move(impl));
}

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       bool add_special) const {
  EncodeOptions options;
  options.add_special = add_special;
  return impl_->Encode(text, options);
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       const EncodeOptions& options) const {
  return impl_->Encode(text, options);
}

bool Tokenizer::ContainsSpecial(std::string_view text) const {
  for (size_t i = 0; i < text.size(); ++i) {
    for (int32_t id : impl_->special_by_byte[static_cast<uint8_t>(text[i])]) {
      if (text.compare(i, impl_->data.tokens[id].size(), impl_->data.tokens[id]) == 0) return true;
    }
  }
  return false;
}

absl::StatusOr<std::string> Tokenizer::Decode(const std::vector<int32_t>& ids,
                                              bool skip_special) const {
  std::string bytes;
  bool first = true;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab_size(), ")"));
    }
    if (skip_special && IsSpecial(id)) continue;
    bytes += TokenBytes(id, first);
    first = false;
  }
  return tokenizer_internal::Utf8Lossy(bytes);
}

std::string Tokenizer::TokenBytes(int32_t id, bool first) const {
  TPS_CHECK(id >= 0 && id < vocab_size()) << "token id " << id;
  const std::string& s = impl_->decoded[id];
  if (first && impl_->data.add_space_prefix && !impl_->special[id] && !s.empty() && s[0] == ' ') {
    return s.substr(1);
  }
  return s;
}

int32_t Tokenizer::TokenId(std::string_view token) const {
  auto it = impl_->vocab.find(absl::string_view(token.data(), token.size()));
  return it == impl_->vocab.end() ? -1 : it->second;
}

const std::string& Tokenizer::TokenText(int32_t id) const {
  TPS_CHECK(id >= 0 && id < vocab_size()) << "token id " << id;
  return impl_->data.tokens[id];
}

bool Tokenizer::IsSpecial(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return false;
  TokenType t = impl_->data.token_types[id];
  return t == TokenType::kControl || t == TokenType::kUnknown || t == TokenType::kUnused;
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->data.tokens.size()); }
int32_t Tokenizer::bos_id() const { return impl_->data.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->data.eos_id; }
int32_t Tokenizer::unk_id() const { return impl_->data.unk_id; }
int32_t Tokenizer::pad_id() const { return impl_->data.pad_id; }
bool Tokenizer::add_bos() const { return impl_->data.add_bos; }
const TokenizerData& Tokenizer::data() const { return impl_->data; }

}  // namespace tpserve
