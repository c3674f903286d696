#include "router/tokenizer/jinja/lexer.h"

#include <cctype>

#include "absl/strings/str_cat.h"

namespace tpserve::jinja {

absl::Status SyntaxError(size_t offset, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("chat template, offset ", offset, ": ", what));
}

namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

}  // namespace

// ---- Splitting the source into text and tags ---------------------------

absl::StatusOr<std::vector<Piece>> SplitTemplate(const std::string& s) {
  std::vector<Piece> out;
  size_t text_begin = 0, i = 0;
  while (true) {
    size_t j = i;
    while (j + 1 < s.size() &&
           !(s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#')))
      ++j;
    if (j + 1 >= s.size()) break;
    out.push_back(Piece{Piece::Type::kText, text_begin, j});
    char open = s[j + 1];
    Piece tag{open == '{'   ? Piece::Type::kExpr
              : open == '%' ? Piece::Type::kStmt
                            : Piece::Type::kComment,
              0, 0};
    size_t k = j + 2;
    if (k < s.size() && s[k] == '-')
      tag.strip_before = true, ++k;
    else if (k < s.size() && s[k] == '+' && open != '{')
      tag.plus_before = true, ++k;
    std::string close = open == '{' ? "}}" : open == '%' ? "%}" : "#}";
    size_t m = k;
    if (open == '#') {
      m = s.find("#}", k);
      if (m == std::string::npos) return SyntaxError(j, "unterminated comment");
    } else {
      while (m + 1 < s.size() && s.compare(m, 2, close) != 0) {
        if (s[m] == '\'' || s[m] == '"') {
          char q = s[m++];
          while (m < s.size() && s[m] != q) m += (s[m] == '\\') ? 2 : 1;
        }
        ++m;
      }
      if (m + 1 >= s.size())
        return SyntaxError(j, absl::StrCat("unterminated tag, expected '", close, "'"));
    }
    size_t content_end = m;
    if (content_end > k && s[content_end - 1] == '-')
      tag.strip_after = true, --content_end;
    else if (content_end > k && s[content_end - 1] == '+' && open != '{')
      tag.plus_after = true, --content_end;
    tag.begin = k;
    tag.end = content_end;
    out.push_back(tag);
    i = m + 2;
    text_begin = i;
  }
  out.push_back(Piece{Piece::Type::kText, text_begin, s.size()});
  // Whitespace control, Hugging Face settings: trim_blocks + lstrip_blocks.
  for (size_t t = 1; t + 1 < out.size(); t += 2) {
    Piece& prev = out[t - 1];
    Piece& tag = out[t];
    Piece& next = out[t + 1];
    bool block = tag.type != Piece::Type::kExpr;
    if (tag.strip_before) {
      while (prev.end > prev.begin && IsSpace(s[prev.end - 1])) --prev.end;
    } else if (block && !tag.plus_before) {
      size_t l = prev.end;
      while (l > prev.begin && (s[l - 1] == ' ' || s[l - 1] == '\t')) --l;
      bool line_start =
          (l > prev.begin) ? s[l - 1] == '\n' : (prev.begin == 0 || s[prev.begin - 1] == '\n');
      if (line_start) prev.end = l;
    }
    if (tag.strip_after) {
      while (next.begin < next.end && IsSpace(s[next.begin])) ++next.begin;
    } else if (block && !tag.plus_after && next.begin < next.end && s[next.begin] == '\n') {
      ++next.begin;
    }
  }
  return out;
}

// ---- Tokens inside a tag -------------------------------------------------

absl::StatusOr<std::vector<Tok>> LexTag(const std::string& s, size_t begin, size_t end) {
  std::vector<Tok> out;
  size_t i = begin;
  static const char* kOps2[] = {"//", "**", "==", "!=", "<=", ">="};
  while (i < end) {
    char c = s[i];
    if (IsSpace(c)) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < end && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Tok::Type::kName, s.substr(i, j - i), i});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      bool is_float = false;
      while (j < end && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '_' ||
                         (s[j] == '.' && !is_float && j + 1 < end &&
                          std::isdigit(static_cast<unsigned char>(s[j + 1]))))) {
        is_float |= s[j] == '.';
        ++j;
      }
      out.push_back({is_float ? Tok::Type::kFloat : Tok::Type::kInt, s.substr(i, j - i), i});
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string v;
      size_t j = i + 1;
      while (j < end && s[j] != c) {
        if (s[j] == '\\' && j + 1 < end) {
          char e = s[++j];
          v += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
        } else {
          v += s[j];
        }
        ++j;
      }
      if (j >= end) return SyntaxError(i, "unterminated string literal");
      out.push_back({Tok::Type::kString, v, i});
      i = j + 1;
    } else {
      std::string op(1, c);
      for (const char* o : kOps2) {
        if (s.compare(i, 2, o) == 0) op = o;
      }
      if (std::string("+-*/%~<>=()[]{}.,:|!").find(c) == std::string::npos || op == "!") {
        return SyntaxError(i, absl::StrCat("unexpected character '", std::string(1, c), "'"));
      }
      out.push_back({Tok::Type::kOp, op, i});
      i += op.size();
    }
  }
  out.push_back({Tok::Type::kEnd, "", end});
  return out;
}

}  // namespace tpserve::jinja
