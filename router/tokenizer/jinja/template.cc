#include "router/tokenizer/jinja/template.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "router/tokenizer/jinja/builtins.h"
#include "router/tokenizer/jinja/parser.h"

namespace tpserve::jinja {
namespace {

absl::Status Err(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("chat template: ", what));
}

// A render bound was reached (RESOURCE_EXHAUSTED, so callers can tell a
// runaway template from one that rejects its input).
absl::Status Exhausted(absl::string_view what) {
  return absl::ResourceExhaustedError(absl::StrCat("chat template: ", what));
}

// Python-style index normalisation for a sequence of length n.
int64_t Normalize(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

class Interpreter {
 public:
  Interpreter(const ValueDict& globals, const RenderLimits& limits) : limits_(limits) {
    scopes_.push_back(BuiltinGlobals());
    for (const auto& kv : globals) Assign(kv.first, kv.second);
    scopes_.emplace_back();  // the template's own top-level scope
  }

  absl::Status Exec(const NodeList& nodes) {
    for (const NodePtr& n : nodes) {
      TPS_RETURN_IF_ERROR(ExecOne(*n));
      if (control_ != Control::kNone) break;  // {% break %} / {% continue %} unwinding
    }
    return absl::OkStatus();
  }

  std::string& out() { return out_; }

 private:
  void Assign(const std::string& name, Value v) {
    for (auto& [k, old] : scopes_.back()) {
      if (k == name) {
        old = std::move(v);
        return;
      }
    }
    scopes_.back().emplace_back(name, std::move(v));
  }

  Value Lookup(const std::string& name) const {
    for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s) {
      for (const auto& [k, v] : *s) {
        if (k == name) return v;
      }
    }
    return Value();
  }

  absl::Status Emit(const std::string& s) {
    if (out_.size() + s.size() > limits_.max_output_bytes) {
      return Exhausted(absl::StrCat("output exceeds ", limits_.max_output_bytes, " bytes"));
    }
    out_ += s;
    return absl::OkStatus();
  }

  absl::Status ExecOne(const Node& n) {
    switch (n.kind) {
      case Node::Kind::kText:
        return Emit(n.text);
      case Node::Kind::kOutput: {
        TPS_ASSIGN_OR_RETURN(Value v, Eval(*n.expr));
        std::string text = v.ToString();
        if (text.size() > kMaxString) return Exhausted("value grows too large");
        return Emit(text);
      }
      case Node::Kind::kIf:
        for (const auto& [cond, body] : n.branches) {
          TPS_ASSIGN_OR_RETURN(Value c, Eval(*cond));
          if (c.Truthy()) return Exec(body);
        }
        return Exec(n.else_body);
      case Node::Kind::kSet: {
        TPS_ASSIGN_OR_RETURN(Value v, Eval(*n.expr));
        if (n.attr.empty()) {
          Assign(n.targets[0], std::move(v));
          return absl::OkStatus();
        }
        Value ns = Lookup(n.targets[0]);
        if (!ns.is_dict()) return Err(absl::StrCat("cannot set attribute of '", n.targets[0], "'"));
        ns.Set(n.attr, std::move(v));
        return absl::OkStatus();
      }
      case Node::Kind::kFor:
        return ExecFor(n);
      case Node::Kind::kBreak:
      case Node::Kind::kContinue:
        if (loop_depth_ == 0) return Err("{% break %} / {% continue %} outside a loop");
        control_ = n.kind == Node::Kind::kBreak ? Control::kBreak : Control::kContinue;
        return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  absl::Status ExecFor(const Node& n) {
    TPS_ASSIGN_OR_RETURN(Value seq, Eval(*n.expr));
    ValueList items;
    if (seq.is_list()) {
      items = seq.items();
    } else if (seq.is_dict()) {
      for (const auto& [k, _] : seq.entries()) items.push_back(Value(k));
    } else if (seq.is_string()) {
      if (seq.as_string().size() > static_cast<size_t>(kMaxSequence)) {
        return Err("string too long to iterate");
      }
      for (const std::string& c : CodePoints(seq.as_string())) items.push_back(Value(c));
    } else if (!seq.is_undefined()) {
      return Err(absl::StrCat("'", seq.TypeName(), "' object is not iterable"));
    }
    auto bind = [&](const Value& item) -> absl::Status {
      if (n.targets.size() == 1) {
        Assign(n.targets[0], item);
        return absl::OkStatus();
      }
      if (!item.is_list() || item.items().size() != n.targets.size()) {
        return Err("cannot unpack loop item");
      }
      for (size_t k = 0; k < n.targets.size(); ++k) Assign(n.targets[k], item.items()[k]);
      return absl::OkStatus();
    };
    if (n.condition) {  // `for x in xs if cond`: filter first, loop.* counts survivors
      ValueList kept;
      for (const Value& item : items) {
        if (++steps_ > limits_.max_steps) return TooManySteps();
        scopes_.emplace_back();
        absl::Status s = bind(item);
        absl::StatusOr<Value> c = s.ok() ? Eval(*n.condition) : absl::StatusOr<Value>(s);
        scopes_.pop_back();
        if (!c.ok()) return c.status();
        if (c->Truthy()) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) return Exec(n.else_body);
    const int64_t len = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < len; ++i) {
      // An iteration is a step even with an empty body: nested loops over
      // long ranges must hit the step bound, not run for minutes.
      if (++steps_ > limits_.max_steps) return TooManySteps();
      scopes_.emplace_back();
      Value loop = Value::Dict({{"index", Value(i + 1)},
                                {"index0", Value(i)},
                                {"revindex", Value(len - i)},
                                {"revindex0", Value(len - i - 1)},
                                {"first", Value(i == 0)},
                                {"last", Value(i == len - 1)},
                                {"length", Value(len)},
                                {"previtem", i > 0 ? items[i - 1] : Value()},
                                {"nextitem", i + 1 < len ? items[i + 1] : Value()}});
      Assign("loop", loop);
      absl::Status s = bind(items[i]);
      ++loop_depth_;
      if (s.ok()) s = Exec(n.body);
      --loop_depth_;
      scopes_.pop_back();
      TPS_RETURN_IF_ERROR(s);
      Control c = control_;
      control_ = Control::kNone;
      if (c == Control::kBreak) break;
    }
    return absl::OkStatus();
  }

  // Every evaluation costs a step, and building a value costs its size
  // (WorkSize / 8): rendering time is bounded for any template.
  absl::StatusOr<Value> Eval(const Expr& e) {
    if (++steps_ > limits_.max_steps) return TooManySteps();
    absl::StatusOr<Value> v = EvalUncharged(e);
    if (v.ok()) {
      steps_ += static_cast<int64_t>(WorkSize(*v) / 8);
      if (v->is_string() && v->as_string().size() > kMaxString) {
        return Exhausted("value grows too large");
      }
    }
    return v;
  }

  absl::StatusOr<Value> EvalUncharged(const Expr& e) {
    using K = Expr::Kind;
    switch (e.kind) {
      case K::kLiteral:
        return e.literal;
      case K::kName:
        return Lookup(e.name);
      case K::kList:
      case K::kDict: {
        ValueList items;
        for (const ExprPtr& a : e.args) {
          TPS_ASSIGN_OR_RETURN(Value v, Eval(*a));
          items.push_back(std::move(v));
        }
        if (e.kind == K::kList) return Value::List(std::move(items));
        ValueDict d;
        for (size_t i = 0; i + 1 < items.size(); i += 2)
          d.emplace_back(items[i].ToString(), items[i + 1]);
        return Value::Dict(std::move(d));
      }
      case K::kAttr: {
        TPS_ASSIGN_OR_RETURN(Value base, Eval(*e.args[0]));
        if (base.is_undefined())
          return Err(absl::StrCat("undefined value has no attribute '", e.name, "'"));
        Value m = BoundMethod(base, e.name);
        if (!m.is_undefined()) return m;
        return base.Get(e.name);
      }
      case K::kIndex: {
        TPS_ASSIGN_OR_RETURN(Value base, Eval(*e.args[0]));
        TPS_ASSIGN_OR_RETURN(Value key, Eval(*e.args[1]));
        return Index(base, key);
      }
      case K::kSlice:
        return Slice(e);
      case K::kCall: {
        TPS_ASSIGN_OR_RETURN(Value fn, Eval(*e.args[0]));
        if (fn.kind() != Value::Kind::kFunction)
          return Err(absl::StrCat("'", fn.TypeName(), "' is not callable"));
        ValueList args;
        ValueDict kwargs;
        TPS_RETURN_IF_ERROR(EvalArgs(e, 1, &args, &kwargs));
        return fn.function()(args, kwargs);
      }
      case K::kFilter: {
        TPS_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
        ValueList args;
        ValueDict kwargs;
        TPS_RETURN_IF_ERROR(EvalArgs(e, 1, &args, &kwargs));
        return ApplyFilter(e.name, v, args, kwargs);
      }
      case K::kTest: {
        TPS_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
        ValueList args;
        ValueDict kwargs;
        TPS_RETURN_IF_ERROR(EvalArgs(e, 1, &args, &kwargs));
        TPS_ASSIGN_OR_RETURN(bool r, ApplyTest(e.name, v, args));
        return Value(r != e.negated);
      }
      case K::kUnary: {
        TPS_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
        if (e.name == "not") return Value(!v.Truthy());
        if (!v.is_number())
          return Err(absl::StrCat("bad operand type for unary ", e.name, ": ", v.TypeName()));
        if (e.name == "+") return v;
        if (v.kind() == Value::Kind::kInt) return Value(-v.as_int());
        return Value(-v.as_float());
      }
      case K::kAnd:
      case K::kOr: {
        TPS_ASSIGN_OR_RETURN(Value l, Eval(*e.args[0]));
        if (l.Truthy() == (e.kind == K::kOr)) return l;
        return Eval(*e.args[1]);
      }
      case K::kTernary: {
        TPS_ASSIGN_OR_RETURN(Value c, Eval(*e.args[1]));
        if (c.Truthy()) return Eval(*e.args[0]);
        if (!e.args[2]) return Value();
        return Eval(*e.args[2]);
      }
      case K::kBinary: {
        TPS_ASSIGN_OR_RETURN(Value l, Eval(*e.args[0]));
        TPS_ASSIGN_OR_RETURN(Value r, Eval(*e.args[1]));
        return Binary(e.name, l, r);
      }
    }
    return Err("unknown expression");
  }

  absl::Status EvalArgs(const Expr& e, size_t from, ValueList* args, ValueDict* kwargs) {
    for (size_t i = from; i < e.args.size(); ++i) {
      TPS_ASSIGN_OR_RETURN(Value v, Eval(*e.args[i]));
      args->push_back(std::move(v));
    }
    for (const auto& [k, x] : e.kwargs) {
      TPS_ASSIGN_OR_RETURN(Value v, Eval(*x));
      kwargs->emplace_back(k, std::move(v));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Value> Index(const Value& base, const Value& key) {
    if (base.is_undefined()) return Err("undefined value is not subscriptable");
    if (base.is_string()) steps_ += static_cast<int64_t>(base.as_string().size() / 8);
    if (base.is_dict()) return key.is_string() ? base.Get(key.as_string()) : Value();
    if ((base.is_list() || base.is_string()) && key.kind() == Value::Kind::kInt) {
      if (base.is_list()) {
        int64_t n = static_cast<int64_t>(base.items().size());
        int64_t i = Normalize(key.as_int(), n);
        return (i >= 0 && i < n) ? base.items()[i] : Value();
      }
      std::vector<std::string> cps = CodePoints(base.as_string());
      int64_t n = static_cast<int64_t>(cps.size());
      int64_t i = Normalize(key.as_int(), n);
      return (i >= 0 && i < n) ? Value(cps[i]) : Value();
    }
    return Value();
  }

  absl::StatusOr<Value> Slice(const Expr& e) {
    TPS_ASSIGN_OR_RETURN(Value base, Eval(*e.args[0]));
    int64_t bounds[3] = {0, 0, 1};
    bool given[3] = {false, false, false};
    for (int k = 0; k < 3; ++k) {
      if (!e.args[k + 1]) continue;
      TPS_ASSIGN_OR_RETURN(Value v, Eval(*e.args[k + 1]));
      if (v.is_none()) continue;
      if (v.kind() != Value::Kind::kInt) return Err("slice indices must be integers");
      bounds[k] = v.as_int();
      given[k] = true;
    }
    int64_t step = bounds[2];
    if (step == 0) return Err("slice step cannot be zero");
    if (base.is_string()) {
      steps_ += static_cast<int64_t>(base.as_string().size());  // one Value per code point
      if (steps_ > limits_.max_steps) return TooManySteps();
    }
    ValueList items;
    std::vector<std::string> cps;
    if (base.is_list()) {
      items = base.items();
    } else if (base.is_string()) {
      cps = CodePoints(base.as_string());
      for (const std::string& c : cps) items.push_back(Value(c));
    } else {
      return Err(absl::StrCat("'", base.TypeName(), "' object is not sliceable"));
    }
    const int64_t n = static_cast<int64_t>(items.size());
    auto clamp = [&](int64_t i, bool g, int64_t dflt) {
      if (!g) return dflt;
      i = Normalize(i, n);
      if (step > 0) return std::clamp<int64_t>(i, 0, n);
      return std::clamp<int64_t>(i, -1, n - 1);
    };
    int64_t start = clamp(bounds[0], given[0], step > 0 ? 0 : n - 1);
    int64_t stop = clamp(bounds[1], given[1], step > 0 ? n : -1);
    ValueList out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(items[i]);
    if (base.is_list()) return Value::List(std::move(out));
    std::string s;
    for (const Value& c : out) s += c.as_string();
    return Value(s);
  }

  absl::StatusOr<Value> Binary(const std::string& op, const Value& l, const Value& r) {
    using VK = Value::Kind;
    if (op == "==") return Value(l.Equals(r));
    if (op == "!=") return Value(!l.Equals(r));
    if (op == "~" || op == "+") {
      if (l.is_list() && r.is_list()) {
        if (l.items().size() + r.items().size() > static_cast<size_t>(kMaxSequence)) {
          return Exhausted("list grows too large");
        }
      } else if (WorkSize(l) + WorkSize(r) > kMaxString) {
        return Exhausted("value grows too large");
      }
    }
    if (op == "~") return Value(l.ToString() + r.ToString());
    if (op == "in" || op == "not in") {
      bool found = false;
      if (r.is_string()) {
        if (!l.is_string()) return Err("'in <string>' requires a string on the left");
        found = r.as_string().find(l.as_string()) != std::string::npos;
      } else if (r.is_list()) {
        for (const Value& x : r.items()) found = found || x.Equals(l);
      } else if (r.is_dict()) {
        found = l.is_string() && !r.Get(l.as_string()).is_undefined();
      } else if (!r.is_undefined()) {
        return Err(absl::StrCat("argument of type '", r.TypeName(), "' is not iterable"));
      }
      return Value(found == (op == "in"));
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int cmp;
      if (l.is_number() && r.is_number()) {
        cmp = l.as_float() < r.as_float() ? -1 : l.as_float() > r.as_float() ? 1 : 0;
      } else if (l.is_string() && r.is_string()) {
        cmp = l.as_string().compare(r.as_string());
      } else {
        return Err(absl::StrCat("'", op, "' not supported between '", l.TypeName(), "' and '",
                                r.TypeName(), "'"));
      }
      bool res = op == "<" ? cmp < 0 : op == ">" ? cmp > 0 : op == "<=" ? cmp <= 0 : cmp >= 0;
      return Value(res);
    }
    if (op == "+") {
      if (l.is_string() && r.is_string()) return Value(l.as_string() + r.as_string());
      if (l.is_list() && r.is_list()) {
        ValueList out = l.items();
        out.insert(out.end(), r.items().begin(), r.items().end());
        return Value::List(std::move(out));
      }
    }
    if (op == "*" && (l.is_string() || r.is_string()) &&
        (l.kind() == VK::kInt || r.kind() == VK::kInt)) {
      const Value& s = l.is_string() ? l : r;
      int64_t times = l.is_string() ? r.as_int() : l.as_int();
      if (times * static_cast<int64_t>(s.as_string().size()) > kMaxSequence)
        return Err("string repetition too long");
      std::string out;
      for (int64_t i = 0; i < times; ++i) out += s.as_string();
      return Value(out);
    }
    if (!l.is_number() || !r.is_number()) {
      return Err(absl::StrCat("unsupported operand types for ", op, ": '", l.TypeName(), "' and '",
                              r.TypeName(), "'"));
    }
    bool ints = l.kind() != VK::kFloat && r.kind() != VK::kFloat;
    double a = l.as_float(), b = r.as_float();
    if (op == "/") {
      if (b == 0) return Err("division by zero");
      return Value(a / b);
    }
    if (ints) {
      int64_t x = l.as_int(), y = r.as_int();
      if (op == "+") return Value(x + y);
      if (op == "-") return Value(x - y);
      if (op == "*") return Value(x * y);
      if (op == "//" || op == "%") {
        if (y == 0) return Err("integer division or modulo by zero");
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) --q, m += y;  // Python floors
        return Value(op == "//" ? q : m);
      }
      if (op == "**" && y >= 0 && y < 64) {
        int64_t p = 1;
        for (int64_t i = 0; i < y; ++i) p *= x;
        return Value(p);
      }
    }
    if (op == "+") return Value(a + b);
    if (op == "-") return Value(a - b);
    if (op == "*") return Value(a * b);
    if (op == "**") return Value(std::pow(a, b));
    if (b == 0) return Err("float division by zero");
    if (op == "//") return Value(std::floor(a / b));
    if (op == "%") return Value(a - b * std::floor(a / b));
    return Err(absl::StrCat("unsupported operator ", op));
  }

  absl::Status TooManySteps() const {
    return Exhausted(absl::StrCat("render takes more than ", limits_.max_steps,
                                  " steps (a loop that does not end?)"));
  }

  enum class Control { kNone, kBreak, kContinue };

  const RenderLimits limits_;
  std::vector<ValueDict> scopes_;
  std::string out_;
  int64_t steps_ = 0;
  int loop_depth_ = 0;
  Control control_ = Control::kNone;
};

}  // namespace

absl::StatusOr<Template> Template::Parse(std::string_view source) {
  TPS_ASSIGN_OR_RETURN(NodeList program, ParseTemplate(source));
  return Template(std::move(program));
}

absl::StatusOr<std::string> Template::Render(const ValueDict& globals,
                                             const RenderLimits& limits) const {
  Interpreter interp(globals, limits);
  TPS_RETURN_IF_ERROR(interp.Exec(program_));
  return std::move(interp.out());
}

}  // namespace tpserve::jinja
