#include "router/tokenizer/jinja/parser.h"

#include <cctype>
#include <cstdlib>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "router/tokenizer/jinja/lexer.h"

namespace tpserve::jinja {
namespace {

// ---- Expressions ---------------------------------------------------------

class ExprParser {
 public:
  explicit ExprParser(std::vector<Tok> toks) : t_(std::move(toks)) {}

  const Tok& Peek(size_t k = 0) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
  bool IsOp(const char* op, size_t k = 0) const {
    return Peek(k).type == Tok::Type::kOp && Peek(k).text == op;
  }
  bool IsName(const char* n, size_t k = 0) const {
    return Peek(k).type == Tok::Type::kName && Peek(k).text == n;
  }
  bool AtEnd() const { return Peek().type == Tok::Type::kEnd; }
  const Tok& Next() { return t_[std::min(p_++, t_.size() - 1)]; }

  absl::Status Expect(const char* op) {
    if (!IsOp(op))
      return SyntaxError(Peek().offset,
                         absl::StrCat("expected '", op, "', found '", Peek().text, "'"));
    ++p_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Peek().type != Tok::Type::kName) return SyntaxError(Peek().offset, "expected a name");
    return Next().text;
  }
  absl::Status ExpectEnd() {
    if (!AtEnd()) return SyntaxError(Peek().offset, absl::StrCat("unexpected '", Peek().text, "'"));
    return absl::OkStatus();
  }

  absl::StatusOr<ExprPtr> Expression(bool allow_ternary = true) {
    // Bounded nesting: a hostile template must not overflow the stack.
    if (++depth_ > kMaxDepth) return SyntaxError(Peek().offset, "expression nested too deeply");
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
    if (++nodes_ > kMaxNodes) return SyntaxError(Peek().offset, "expression too long");
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
      if (++unary_depth_ > kMaxDepth)
        return SyntaxError(Peek().offset, "expression nested too deeply");
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
    static const std::vector<std::set<std::string>> kLevels = {
        {"+", "-"}, {"~"}, {"*", "/", "//", "%"}, {"**"}};
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
      if (++unary_depth_ > kMaxDepth)
        return SyntaxError(Peek().offset, "expression nested too deeply");
      TPS_ASSIGN_OR_RETURN(ExprPtr e, Unary());
      --unary_depth_;
      return Make(Expr::Kind::kUnary, op, {e});
    }
    TPS_ASSIGN_OR_RETURN(ExprPtr e, Primary());
    return Postfix(e);
  }
  absl::Status Args(std::vector<ExprPtr>* args,
                    std::vector<std::pair<std::string, ExprPtr>>* kwargs) {
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
      if (++nodes_ > kMaxNodes) return SyntaxError(Peek().offset, "expression too long");
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
          if (IsOp(",")) return SyntaxError(t.offset, "tuples are not supported");
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
    return SyntaxError(t.offset, absl::StrCat("unexpected '", t.text, "' in expression"));
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
  TemplateParser(const std::string& s, std::vector<Piece> pieces)
      : s_(s), pieces_(std::move(pieces)) {}

  // Parses until one of `ends` (a statement name) or the end of input; sets
  // *end_tag to the name found ("" at end of input).
  absl::StatusOr<NodeList> Block(const std::set<std::string>& ends, std::string* end_tag,
                                 ExprParser** end_parser) {
    if (++depth_ > kMaxDepth) return SyntaxError(0, "blocks nested too deeply");
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
      TPS_ASSIGN_OR_RETURN(std::vector<Tok> toks, LexTag(s_, p.begin, p.end));
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
      return SyntaxError(s_.size(), absl::StrCat("missing {% ", *ends.rbegin(), " %}"));
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
      if (!ep.IsName("in")) return SyntaxError(offset, "expected 'in' in {% for %}");
      ep.Next();
      TPS_ASSIGN_OR_RETURN(n->expr, ep.Expression(/*allow_ternary=*/false));
      if (ep.IsName("if")) {
        ep.Next();
        TPS_ASSIGN_OR_RETURN(n->condition, ep.Expression(false));
      }
      if (ep.IsName("recursive")) return SyntaxError(offset, "recursive loops are not supported");
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
      if (!ep.IsOp("="))
        return SyntaxError(offset, "only `{% set name = expression %}` is supported");
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
    return SyntaxError(offset, absl::StrCat("unsupported Jinja tag {% ", tag, " %}"));
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
  TPS_ASSIGN_OR_RETURN(std::vector<Piece> pieces, SplitTemplate(s));
  TemplateParser parser(s, std::move(pieces));
  std::string end;
  ExprParser* endp = nullptr;
  return parser.Block({}, &end, &endp);
}

}  // namespace tpserve::jinja
