// Lexer for the Jinja subset (internal to parser.cc): splits a template into
// text and tags with Hugging Face's whitespace settings (trim_blocks,
// lstrip_blocks, "-" control), and a tag's content into tokens.
//
//   TPS_ASSIGN_OR_RETURN(std::vector<Piece> pieces, SplitTemplate(source));
//   TPS_ASSIGN_OR_RETURN(std::vector<Tok> toks, LexTag(source, p.begin, p.end));
#ifndef TPSERVE_ROUTER_TOKENIZER_JINJA_LEXER_H_
#define TPSERVE_ROUTER_TOKENIZER_JINJA_LEXER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tpserve::jinja {

struct Piece {
  enum class Type { kText, kExpr, kStmt, kComment } type;
  size_t begin, end;                               // kText: the text; tags: the inner content
  bool strip_before = false, strip_after = false;  // "-"
  bool plus_before = false, plus_after = false;    // "+": no lstrip / trim
};

struct Tok {
  enum class Type { kName, kString, kInt, kFloat, kOp, kEnd } type;
  std::string text;
  size_t offset;
};

// InvalidArgument "chat template, offset N: what".
absl::Status SyntaxError(size_t offset, absl::string_view what);

// Text and tags of `s` (newlines already normalised), alternating, starting
// and ending with a (possibly empty) text piece; whitespace control applied.
absl::StatusOr<std::vector<Piece>> SplitTemplate(const std::string& s);

// Tokens of s[begin, end), ending with a kEnd token.
absl::StatusOr<std::vector<Tok>> LexTag(const std::string& s, size_t begin, size_t end);

}  // namespace tpserve::jinja

#endif  // TPSERVE_ROUTER_TOKENIZER_JINJA_LEXER_H_
