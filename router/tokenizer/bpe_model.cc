#include "router/tokenizer/bpe_model.h"

#include <queue>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "router/tokenizer/unicode.h"

namespace tpserve::tokenizer_internal {
namespace {

bool Printable(uint8_t b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

struct ByteTables {
  std::array<uint32_t, 256> to_cp;
  ByteTables() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) to_cp[b] = Printable(b) ? b : next++;
  }
};
const ByteTables& Tables() {
  static const ByteTables* t = new ByteTables();
  return *t;
}

// A symbol in the doubly linked list the merge loops work on.
struct Symbol {
  int32_t id;    // byte-level: token id; SentencePiece: unused
  size_t start;  // byte range in the piece
  size_t len;
  int prev;
  int next;
};

void Link(std::vector<Symbol>* s) {
  for (size_t i = 0; i < s->size(); ++i) {
    (*s)[i].prev = static_cast<int>(i) - 1;
    (*s)[i].next = i + 1 < s->size() ? static_cast<int>(i) + 1 : -1;
  }
}

}  // namespace

uint32_t ByteToCodepoint(uint8_t b) { return Tables().to_cp[b]; }

int CodepointToByte(uint32_t cp) {
  if (cp < 256) return Printable(static_cast<uint8_t>(cp)) ? static_cast<int>(cp) : -1;
  if (cp >= 256 + 68) return -1;  // 68 bytes are not printable
  const auto& t = Tables().to_cp;
  for (int b = 0; b < 256; ++b) {
    if (t[b] == cp) return b;
  }
  return -1;
}

absl::StatusOr<ByteLevelBpe> ByteLevelBpe::Create(const VocabMap& vocab,
                                                  const std::vector<std::string>& merges,
                                                  bool ignore_merges) {
  ByteLevelBpe bpe;
  bpe.ignore_merges_ = ignore_merges;
  for (int b = 0; b < 256; ++b) {
    std::string s;
    AppendUtf8(ByteToCodepoint(static_cast<uint8_t>(b)), &s);
    auto it = vocab.find(s);
    bpe.byte_ids_[b] = it == vocab.end() ? -1 : it->second;
  }
  bpe.merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const std::string& m = merges[r];
    size_t sp = m.find(' ', 1);  // a half is never empty; skip a leading space
    if (sp == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("merge ", r, " has no space: \"", m, "\""));
    }
    auto a = vocab.find(m.substr(0, sp));
    auto b = vocab.find(m.substr(sp + 1));
    auto ab = vocab.find(m.substr(0, sp) + m.substr(sp + 1));
    if (a == vocab.end() || b == vocab.end() || ab == vocab.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", r, " (\"", m, "\") names a token not in the vocabulary"));
    }
    bpe.merges_.try_emplace(Key(a->second, b->second), Merge{static_cast<int32_t>(r), ab->second});
  }
  return bpe;
}

void ByteLevelBpe::Encode(std::string_view piece, const VocabMap& vocab,
                          std::vector<int32_t>* out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    std::string mapped;
    for (unsigned char b : piece) AppendUtf8(ByteToCodepoint(b), &mapped);
    auto it = vocab.find(mapped);
    if (it != vocab.end()) {
      out->push_back(it->second);
      return;
    }
  }
  std::vector<Symbol> syms;
  syms.reserve(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) {
    syms.push_back(Symbol{byte_ids_[static_cast<uint8_t>(piece[i])], i, 1, 0, 0});
  }
  Link(&syms);
  // (rank, left index, expected left id, expected right id): min-heap.
  using Cand = std::tuple<int32_t, int, int32_t, int32_t>;
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int l) {
    if (l < 0 || syms[l].next < 0) return;
    int r = syms[l].next;
    if (syms[l].id < 0 || syms[r].id < 0) return;
    auto it = merges_.find(Key(syms[l].id, syms[r].id));
    if (it != merges_.end()) heap.emplace(it->second.rank, l, syms[l].id, syms[r].id);
  };
  for (int i = 0; i + 1 < static_cast<int>(syms.size()); ++i) push(i);
  while (!heap.empty()) {
    auto [rank, l, lid, rid] = heap.top();
    heap.pop();
    Symbol& left = syms[l];
    if (left.len == 0 || left.id != lid || left.next < 0) continue;  // stale
    Symbol& right = syms[left.next];
    if (right.id != rid) continue;
    left.id = merges_.at(Key(lid, rid)).result;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (left.next >= 0) syms[left.next].prev = l;
    push(left.prev);
    push(l);
  }
  for (int i = 0; i >= 0; i = syms[i].next) {
    if (syms[i].id >= 0) out->push_back(syms[i].id);  // else: byte not in the vocabulary
  }
}

void SentencePieceBpe::Encode(std::string_view text, const VocabMap& vocab,
                              std::vector<int32_t>* out) const {
  if (text.empty()) return;
  std::vector<Symbol> syms;
  for (size_t i = 0; i < text.size();) {
    size_t len;
    DecodeUtf8(text, i, &len);
    syms.push_back(Symbol{-1, i, len, 0, 0});
    i += len;
  }
  Link(&syms);
  // (score, -left index) max-heap: highest score first, then leftmost.
  struct Cand {
    float score;
    int left;
    size_t len;  // expected byte length of the pair, detects stale entries
    int32_t id;
    bool operator<(const Cand& o) const {
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::priority_queue<Cand> heap;
  std::string buf;
  auto push = [&](int l) {
    if (l < 0 || syms[l].next < 0) return;
    const Symbol& a = syms[l];
    const Symbol& b = syms[a.next];
    auto it = vocab.find(absl::string_view(text.data() + a.start, a.len + b.len));
    if (it == vocab.end() || !mergeable_[it->second]) return;
    heap.push(Cand{scores_[it->second], l, a.len + b.len, it->second});
  };
  for (int i = 0; i + 1 < static_cast<int>(syms.size()); ++i) push(i);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Symbol& left = syms[c.left];
    if (left.len == 0 || left.next < 0 || left.len + syms[left.next].len != c.len) continue;
    Symbol& right = syms[left.next];
    left.len += right.len;
    left.id = c.id;
    right.len = 0;
    left.next = right.next;
    if (left.next >= 0) syms[left.next].prev = c.left;
    push(left.prev);
    push(c.left);
  }
  for (int i = 0; i >= 0; i = syms[i].next) {
    const Symbol& s = syms[i];
    if (s.id >= 0) {
      out->push_back(s.id);
      continue;
    }
    auto it = vocab.find(absl::string_view(text.data() + s.start, s.len));
    if (it != vocab.end()) {
      out->push_back(it->second);
      continue;
    }
    for (size_t k = 0; k < s.len; ++k) {
      int32_t b = byte_ids_[static_cast<uint8_t>(text[s.start + k])];
      if (b >= 0) {
        out->push_back(b);
      } else if (unk_id_ >= 0) {
        out->push_back(unk_id_);
        break;  // one unk per unknown character
      }
    }
  }
}

}  // namespace tpserve::tokenizer_internal
