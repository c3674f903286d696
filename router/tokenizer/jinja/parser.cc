#include "router/tokenizer/jinja/parser.h"

#include <cctype>
#include <cstdlib>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace tpserve::jinja {
namespace {

// ---- Splitting the source into text and tags ---------------------------

struct Piece {
  enum class Type { kText, kExpr, kStmt, kComment } type;
  size_t begin, end;  // kText: the text; tags: the inner content
  bool strip_before = false, strip_after = false;  // "-"
  bool plus_before = false, plus_after = false;    // "+": no lstrip / trim
};

absl::Status Error(size_t offset, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("chat template, offset ", offset, ": ", what));
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

absl::StatusOr<std::vector<Piece>> Split(const std::string& s) {
  std::vector<Piece> out;
  size_t text_begin = 0, i = 0;
  while (true) {
    size_t j = i;
    while (j + 1 < s.size() && !(s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#'))) ++j;
    if (j + 1 >= s.size()) break;
    out.push_back(Piece{Piece::Type::kText, text_begin, j});
    char open = s[j + 1];
    Piece tag{open == '{' ? Piece::Type::kExpr : open == '%' ? Piece::Type::kStmt : Piece::Type::kComment, 0, 0};
    size_t k = j + 2;
    if (k < s.size() && s[k] == '-') tag.strip_before = true, ++k;
    else if (k < s.size() && s[k] == '+' && open != '{') tag.plus_before = true, ++k;
    std::string close = open == '{' ? "}}" : open == '%' ? "%}" : "#}";
    size_t m = k;
    if (open == '#') {
      m = s.find("#}", k);
      if (m == std::string::npos) return Error(j, "unterminated comment");
    } else {
      while (m + 1 < s.size() && s.compare(m, 2, close) != 0) {
        if (s[m] == '\'' || s[m] == '"') {
          char q = s[m++];
          while (m < s.size() && s[m] != q) m += (s[m] == '\\') ? 2 : 1;
        }
        ++m;
      }
      if (m + 1 >= s.size()) return Error(j, absl::StrCat("unterminated tag, expected '", close, "'"));
    }
    size_t content_end = m;
    if (content_end > k && s[content_end - 1] == '-') tag.strip_after = true, --content_end;
    else if (content_end > k && s[content_end - 1] == '+' && open != '{') tag.plus_after = true, --content_end;
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
      bool line_start = (l > prev.begin) ? s[l - 1] == '\n' : (prev.begin == 0 || s[prev.begin - 1] == '\n');
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

struct Tok {
  enum class Type { kName, kString, kInt, kFloat, kOp, kEnd } type;
  std::string text;
  size_t offset;
};

absl::StatusOr<std::vector<Tok>> Lex(const std::string& s, size_t begin, size_t end) {
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
                         (s[j] == '.' && !is_float && j + 1 < end && std::isdigit(static_cast<unsigned char>(s[j + 1]))))) {
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
      if (j >= end) return Error(i, "unterminated string literal");
      out.push_back({Tok::Type::kString, v, i});
      i = j + 1;
    } else {
      std::string op(1, c);
      for (const char* o : kOps2) {
        if (s.compare(i, 2, o) == 0) op = o;
      }
      if (std::string("+-*/%~<>=()[]{}.,:|!").find(c) == std::string::npos || op == "!") {
        return Error(i, absl::StrCat("unexpected character '", std::string(1, c), "'"));
      }
      out.push_back({Tok::Type::kOp, op, i});
      i += op.size();
    }
  }
  out.push_back({Tok::Type::kEnd, "", end});
  return out;
}

// ---- Expressions ---------------------------------------------------------

class ExprParser {
 public:
  explicit ExprParser(std::vector<Tok> toks) : t_(std::move(toks)) {}

  const Tok& Peek(size_t k = 0) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
  bool IsOp(const char* op, size_t k = 0) const { return Peek(k).type == Tok::Type::kOp && Peek(k).text == op; }
  bool IsName(const char* n, size_t k = 0) const { return Peek(k).type == Tok::Type::kName && Peek(k).text == n; }
  bool AtEnd() const { return Peek().type == Tok::Type::kEnd; }
  const Tok& Next() { return t_[std::min(p_++, t_.size() - 1)]; }

  absl::Status Expect(const char* op) {
    if (!IsOp(op)) return Error(Peek().offset, absl::StrCat("expected '", op, "', found '", Peek().text, "'"));
    ++p_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Peek().type != Tok::Type::kName) return Error(Peek().offset, "expected a name");
    return Next().text;
  }
  absl::Status ExpectEnd() {
    if (!AtEnd()) return Error(Peek().offset, absl::StrCat("unexpected '", Peek().text, "'"));
    return absl::OkStatus();
  }

  absl::StatusOr<ExprPtr> Expression(bool allow_ternary = true) {
    // Bounded nesting: a hostile template must not overflow the stack.
    if (++depth_ > kMaxDepth) return Error(Peek().offset, "expression nested too deeply");
    auto result = ExpressionBody(allow_ternary);
    --depth_;
    return result;
  }

 private:
  static constexpr int kMaxDepth = 64;

  absl::StatusOr<ExprPtr> ExpressionBody(bool allow_ternary) {
    TPS_ASSIGN_OR_RETURN(ExprPtr e, Or());
    while (allow_ternary && IsName("if")) {
      ++p_;
      TPS_ASSIGN_OR_RETURN(ExprPtr cond, Or());
      ExprPtr other;
      if (IsName("else")) {
        ++p_;
        TPS_ASSIGN_OR_RETURN(other, Expression());
      }
      e = Make(Expr::Kind::kTernary, "", {e, cond, other});
    }
    return e;
  }

  // Left-deep chains (a + b + c ...) are evaluated recursively: cap the
  // number of nodes one tag may build.
  absl::StatusOr<ExprPtr> Limit(ExprPtr e) {
    if (++nodes_ > kMaxNodes) return Error(Peek().offset, "expression too long");
    return e;
  }
  static constexpr int kMaxNodes = 2000;

  static ExprPtr Make(Expr::Kind k, std::string name, std::vector<ExprPtr> args) {
    auto e = std::make_shared<Expr>();
    e->kind = k;
    e->name = std::move(name);
    e->args = std::move(args);
    return e;
  }

  absl::StatusOr<ExprPtr> Or() {
    TPS_ASSIGN_OR_RETURN(ExprPtr e, And());
    while (IsName("or")) {
      ++p_;
      TPS_ASSIGN_OR_RETURN(ExprPtr r, And());
      TPS_ASSIGN_OR_RETURN(e, Limit(Make(Expr::Kind::kOr, "or", {e, r})));
    }
    return e;
  }
  absl::StatusOr<ExprPtr> And() {
    TPS_ASSIGN_OR_RETURN(ExprPtr e, Not());
    while (IsName("and")) {
      ++p_;
      TPS_ASSIGN_OR_RETURN(ExprPtr r, Not());
      TPS_ASSIGN_OR_RETURN(e, Limit(Make(Expr::Kind::kAnd, "and", {e, r})));
    }
    return e;
  }
  absl::StatusOr<ExprPtr> Not() {
    if (IsName("not")) {
      ++p_;
      if (++unary_depth_ > kMaxDepth) return Error(Peek().offset, "expression nested too deeply");
      TPS_ASSIGN_OR_RETURN(ExprPtr e, Not());
      --unary_depth_;
      return Make(Expr::Kind::kUnary, "not", {e});
    }
    return Compare();
  }
  absl::StatusOr<ExprPtr> Compare() {
    TPS_ASSIGN_OR_RETURN(ExprPtr e, Binary(0));
    while (true) {
      std::string op;
      if (Peek().type == Tok::Type::kOp &&
          (Peek().text == "==" || Peek().text == "!=" || Peek().text == "<" || Peek().text == ">" ||
           Peek().text == "<=" || Peek().text == ">=")) {
        op = Next().text;
      } else if (IsName("in")) {
        ++p_, op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        p_ += 2, op = "not in";
      } else {
        return e;
      }
      TPS_ASSIGN_OR_RETURN(ExprPtr r, Binary(0));
      TPS_ASSIGN_OR_RETURN(e, Limit(Make(Expr::Kind::kBinary, op, {e, r})));
    }
  }
  // Levels: 0 "+ -", 1 "~", 2 "* / // %", 3 "**", then unary.
  absl::StatusOr<ExprPtr> Binary(int level) {
    static const std::vector<std::set<std::string>> kLevels = {{"+", "-"}, {"~"}, {"*", "/", "//", "%"}, {"**"}};
    if (level == 4) return Unary();
    TPS_ASSIGN_OR_RETURN(ExprPtr e, Binary(level + 1));
    while (Peek().type == Tok::Type::kOp && kLevels[level].count(Peek().text)) {
      std::string op = Next().text;
      TPS_ASSIGN_OR_RETURN(ExprPtr r, Binary(level + 1));
      TPS_ASSIGN_OR_RETURN(e, Limit(Make(Expr::Kind::kBinary, op, {e, r})));
    }
    return e;
  }
  absl::StatusOr<ExprPtr> Unary() {
    if (IsOp("-") || IsOp("+")) {
      std::string op = Next().text;
      if (++unary_depth_ > kMaxDepth) return Error(Peek().offset, "expression nested too deeply");
      TPS_ASSIGN_OR_RETURN(ExprPtr e, Unary());
      --unary_depth_;
      return Make(Expr::Kind::kUnary, op, {e});
    }
    TPS_ASSIGN_OR_RETURN(ExprPtr e, Primary());
    return Postfix(e);
  }
  absl::Status Args(std::vector<ExprPtr>* args, std::vector<std::pair<std::string, ExprPtr>>* kwargs) {
    TPS_RETURN_IF_ERROR(Expect("("));
    while (!IsOp(")")) {
      if (Peek().type == Tok::Type::kName && IsOp("=", 1)) {
        std::string key = Next().text;
        ++p_;
        TPS_ASSIGN_OR_RETURN(ExprPtr v, Expression());
        kwargs->emplace_back(key, v);
      } else {
        TPS_ASSIGN_OR_RETURN(ExprPtr v, Expression());
        args->push_back(v);
      }
      if (!IsOp(",")) break;
      ++p_;
    }
    return Expect(")");
  }
  absl::StatusOr<ExprPtr> Postfix(ExprPtr e) {
    while (true) {
      if (++nodes_ > kMaxNodes) return Error(Peek().offset, "expression too long");
      if (IsOp(".")) {
        ++p_;
        TPS_ASSIGN_OR_RETURN(std::string name, ExpectName());
        e = Make(Expr::Kind::kAttr, name, {e});
      } else if (IsOp("[")) {
        ++p_;
        std::vector<ExprPtr> parts = {e};
        ExprPtr first;
        if (!IsOp(":")) {
          TPS_ASSIGN_OR_RETURN(first, Expression());
        }
        if (!IsOp(":")) {
          TPS_RETURN_IF_ERROR(Expect("]"));
          e = Make(Expr::Kind::kIndex, "", {e, first});
          continue;
        }
        parts.push_back(first);
        for (int k = 0; k < 2; ++k) {
          ExprPtr part;
          if (IsOp(":")) {
            ++p_;
            if (!IsOp(":") && !IsOp("]")) {
              TPS_ASSIGN_OR_RETURN(part, Expression());
            }
          }
          parts.push_back(part);
        }
        TPS_RETURN_IF_ERROR(Expect("]"));
        e = Make(Expr::Kind::kSlice, "", parts);
      } else if (IsOp("(")) {
        auto call = std::make_shared<Expr>();
        call->kind = Expr::Kind::kCall;
        call->args.push_back(e);
        TPS_RETURN_IF_ERROR(Args(&call->args, &call->kwargs));
        e = call;
      } else if (IsOp("|") || IsName("is")) {
        bool filter = IsOp("|");
        ++p_;
        auto f = std::make_shared<Expr>();
        f->kind = filter ? Expr::Kind::kFilter : Expr::Kind::kTest;
        if (!filter && IsName("not")) ++p_, f->negated = true;
        if (!filter && (IsName("none") || IsName("true") || IsName("false"))) {
          f->name = Next().text;
        } else {
          TPS_ASSIGN_OR_RETURN(f->name, ExpectName());
        }
        f->args.push_back(e);
        if (IsOp("(")) TPS_RETURN_IF_ERROR(Args(&f->args, &f->kwargs));
        e = f;
      } else {
        return e;
      }
    }
  }
  absl::StatusOr<ExprPtr> Primary() {
    const Tok& t = Next();
    auto lit = [](Value v) {
      auto e = std::make_shared<Expr>();
      e->kind = Expr::Kind::kLiteral;
      e->literal = std::move(v);
      return e;
    };
    switch (t.type) {
      case Tok::Type::kString: {
        std::string s = t.text;
        while (Peek().type == Tok::Type::kString) s += Next().text;  // "a" "b"
        return ExprPtr(lit(Value(s)));
      }
      case Tok::Type::kInt:
        return ExprPtr(lit(Value(static_cast<int64_t>(std::strtoll(t.text.c_str(), nullptr, 10)))));
      case Tok::Type::kFloat:
        return ExprPtr(lit(Value(std::strtod(t.text.c_str(), nullptr))));
      case Tok::Type::kName:
        if (t.text == "true" || t.text == "True") return ExprPtr(lit(Value(true)));
        if (t.text == "false" || t.text == "False") return ExprPtr(lit(Value(false)));
        if (t.text == "none" || t.text == "None") return ExprPtr(lit(Value::None()));
        return Make(Expr::Kind::kName, t.text, {});
      case Tok::Type::kOp:
        if (t.text == "(") {
          TPS_ASSIGN_OR_RETURN(ExprPtr e, Expression());
          if (IsOp(",")) return Error(t.offset, "tuples are not supported");
          TPS_RETURN_IF_ERROR(Expect(")"));
          return e;
        }
        if (t.text == "[" || t.text == "{") {
          bool list = t.text == "[";
          auto e = std::make_shared<Expr>();
          e->kind = list ? Expr::Kind::kList : Expr::Kind::kDict;
          while (!IsOp(list ? "]" : "}")) {
            TPS_ASSIGN_OR_RETURN(ExprPtr item, Expression());
            e->args.push_back(item);
            if (!list) {
              TPS_RETURN_IF_ERROR(Expect(":"));
              TPS_ASSIGN_OR_RETURN(ExprPtr v, Expression());
              e->args.push_back(v);
            }
            if (!IsOp(",")) break;
            ++p_;
          }
          TPS_RETURN_IF_ERROR(Expect(list ? "]" : "}"));
          return ExprPtr(e);
        }
        break;
      default:
        break;
    }
    return Error(t.offset, absl::StrCat("unexpected '", t.text, "' in expression"));
  }

  std::vector<Tok> t_;
  size_t p_ = 0;
  int depth_ = 0;
  int unary_depth_ = 0;
  int nodes_ = 0;
};

// ---- Statements ----------------------------------------------------------

class TemplateParser {
 public:
  TemplateParser(const std::string& s, std::vector<Piece> pieces) : s_(s), pieces_(std::move(pieces)) {}

  // Parses until one of `ends` (a statement name) or the end of input; sets
  // *end_tag to the name found ("" at end of input).
  absl::StatusOr<NodeList> Block(const std::set<std::string>& ends, std::string* end_tag, ExprParser** end_parser) {
    if (++depth_ > kMaxDepth) return Error(0, "blocks nested too deeply");
    auto result = BlockBody(ends, end_tag, end_parser);
    --depth_;
    return result;
  }

 private:
  static constexpr int kMaxDepth = 64;

  absl::StatusOr<NodeList> BlockBody(const std::set<std::string>& ends, std::string* end_tag,
                                     ExprParser** end_parser) {
    NodeList out;
    while (i_ < pieces_.size()) {
      const Piece& p = pieces_[i_++];
      if (p.type == Piece::Type::kComment) continue;
      if (p.type == Piece::Type::kText) {
        if (p.end > p.begin) {
          auto n = std::make_shared<Node>();
          n->kind = Node::Kind::kText;
          n->text = s_.substr(p.begin, p.end - p.begin);
          out.push_back(n);
        }
        continue;
      }
      TPS_ASSIGN_OR_RETURN(std::vector<Tok> toks, Lex(s_, p.begin, p.end));
      parsers_.push_back(std::make_unique<ExprParser>(std::move(toks)));
      ExprParser& ep = *parsers_.back();
      if (p.type == Piece::Type::kExpr) {
        auto n = std::make_shared<Node>();
        n->kind = Node::Kind::kOutput;
        TPS_ASSIGN_OR_RETURN(n->expr, ep.Expression());
        TPS_RETURN_IF_ERROR(ep.ExpectEnd());
        out.push_back(n);
        continue;
      }
      TPS_ASSIGN_OR_RETURN(std::string tag, ep.ExpectName());
      if (ends.count(tag)) {
        *end_tag = tag;
        *end_parser = &ep;
        return out;
      }
      TPS_ASSIGN_OR_RETURN(NodePtr n, Statement(tag, ep, p.begin));
      out.push_back(n);
    }
    if (!ends.empty()) {
      return Error(s_.size(), absl::StrCat("missing {% ", *ends.rbegin(), " %}"));
    }
    *end_tag = "";
    return out;
  }

  absl::StatusOr<NodePtr> Statement(const std::string& tag, ExprParser& ep, size_t offset) {
    auto n = std::make_shared<Node>();
    std::string end;
    ExprParser* endp = nullptr;
    if (tag == "if") {
      n->kind = Node::Kind::kIf;
      TPS_ASSIGN_OR_RETURN(ExprPtr cond, ep.Expression());
      TPS_RETURN_IF_ERROR(ep.ExpectEnd());
      while (true) {
        TPS_ASSIGN_OR_RETURN(NodeList body, Block({"elif", "else", "endif"}, &end, &endp));
        n->branches.emplace_back(cond, std::move(body));
        if (end != "elif") break;
        TPS_ASSIGN_OR_RETURN(cond, endp->Expression());
        TPS_RETURN_IF_ERROR(endp->ExpectEnd());
      }
      if (end == "else") {
        TPS_ASSIGN_OR_RETURN(n->else_body, Block({"endif"}, &end, &endp));
      }
      return NodePtr(n);
    }
    if (tag == "for") {
      n->kind = Node::Kind::kFor;
      do {
        TPS_ASSIGN_OR_RETURN(std::string name, ep.ExpectName());
        n->targets.push_back(name);
      } while (ep.IsOp(",") && (ep.Next(), true));
      if (!ep.IsName("in")) return Error(offset, "expected 'in' in {% for %}");
      ep.Next();
      TPS_ASSIGN_OR_RETURN(n->expr, ep.Expression(/*allow_ternary=*/false));
      if (ep.IsName("if")) {
        ep.Next();
        TPS_ASSIGN_OR_RETURN(n->condition, ep.Expression(false));
      }
      if (ep.IsName("recursive")) return Error(offset, "recursive loops are not supported");
      TPS_RETURN_IF_ERROR(ep.ExpectEnd());
      TPS_ASSIGN_OR_RETURN(n->body, Block({"else", "endfor"}, &end, &endp));
      if (end == "else") {
        TPS_ASSIGN_OR_RETURN(n->else_body, Block({"endfor"}, &end, &endp));
      }
      return NodePtr(n);
    }
    if (tag == "set") {
      n->kind = Node::Kind::kSet;
      TPS_ASSIGN_OR_RETURN(std::string name, ep.ExpectName());
      n->targets.push_back(name);
      if (ep.IsOp(".")) {
        ep.Next();
        TPS_ASSIGN_OR_RETURN(n->attr, ep.ExpectName());
      }
      if (!ep.IsOp("=")) return Error(offset, "only `{% set name = expression %}` is supported");
      ep.Next();
      TPS_ASSIGN_OR_RETURN(n->expr, ep.Expression());
      TPS_RETURN_IF_ERROR(ep.ExpectEnd());
      return NodePtr(n);
    }
    if (tag == "break" || tag == "continue") {  // jinja2.ext.loopcontrols, as transformers enables
      TPS_RETURN_IF_ERROR(ep.ExpectEnd());
      n->kind = tag == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
      return NodePtr(n);
    }
    if (tag == "generation") {  // transformers' assistant-mask marker: renders its body
      TPS_RETURN_IF_ERROR(ep.ExpectEnd());
      n->kind = Node::Kind::kIf;
      auto yes = std::make_shared<Expr>();
      yes->kind = Expr::Kind::kLiteral;
      yes->literal = Value(true);
      TPS_ASSIGN_OR_RETURN(NodeList body, Block({"endgeneration"}, &end, &endp));
      n->branches.emplace_back(yes, std::move(body));
      return NodePtr(n);
    }
    return Error(offset, absl::StrCat("unsupported Jinja tag {% ", tag, " %}"));
  }

  const std::string& s_;
  std::vector<Piece> pieces_;
  size_t i_ = 0;
  int depth_ = 0;
  std::vector<std::unique_ptr<ExprParser>> parsers_;
};

}  // namespace

absl::StatusOr<NodeList> ParseTemplate(std::string_view source) {
  // Jinja's lexer: newlines normalised to "\n", one trailing newline dropped.
  std::string s;
  s.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      s += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      s += source[i];
    }
  }
  if (!s.empty() && s.back() == '\n') s.pop_back();
  TPS_ASSIGN_OR_RETURN(std::vector<Piece> pieces, Split(s));
  TemplateParser parser(s, std::move(pieces));
  std::string end;
  ExprParser* endp = nullptr;
  return parser.Block({}, &end, &endp);
}

}  // namespace tpserve::jinja
