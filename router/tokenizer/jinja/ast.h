// Syntax tree of the Jinja subset chat templates use (see parser.h).
#ifndef TPSERVE_ROUTER_TOKENIZER_JINJA_AST_H_
#define TPSERVE_ROUTER_TOKENIZER_JINJA_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "router/tokenizer/jinja/value.h"

namespace tpserve::jinja {

struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;

struct Expr {
  enum class Kind {
    kLiteral,  // literal
    kName,     // name
    kList,     // [args...]
    kDict,     // {kwargs...} (keys are args[2i], values args[2i+1])
    kAttr,     // args[0] . name
    kIndex,    // args[0] [ args[1] ]
    kSlice,    // args[0] [ args[1] : args[2] : args[3] ] (null = omitted)
    kCall,     // args[0] ( args[1..], kwargs )
    kFilter,   // args[0] | name ( args[1..], kwargs )
    kTest,     // args[0] is [not] name ( args[1..] )
    kUnary,    // name in {"-", "+", "not"} args[0]
    kBinary,   // args[0] name args[1]; name: + - * / // % ** ~ == != < > <= >= in "not in"
    kAnd,
    kOr,
    kTernary,  // args[0] if args[1] else args[2] (args[2] may be null)
  };
  Kind kind;
  Value literal;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negated = false;  // kTest: "is not"
};

struct Node;
using NodePtr = std::shared_ptr<const Node>;
using NodeList = std::vector<NodePtr>;

struct Node {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kBreak, kContinue };
  Kind kind;
  std::string text;                                    // kText
  ExprPtr expr;                                        // kOutput, kSet value, kFor iterable
  std::vector<std::pair<ExprPtr, NodeList>> branches;  // kIf: if / elif ...
  NodeList body;                                       // kFor body
  NodeList else_body;                                  // kIf else, kFor else
  std::vector<std::string> targets;                    // kFor loop variables; kSet [name]
  std::string attr;                                    // kSet: `set ns.attr = ...`
  ExprPtr condition;                                   // kFor: `for x in xs if cond`
};

}  // namespace tpserve::jinja

#endif  // TPSERVE_ROUTER_TOKENIZER_JINJA_AST_H_
