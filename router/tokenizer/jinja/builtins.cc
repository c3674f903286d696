#include "router/tokenizer/jinja/builtins.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "router/tokenizer/unicode.h"

namespace tpserve::jinja {
namespace {

absl::Status TypeError(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("chat template: ", what));
}

// Python's str.isspace() for one code point.
bool PySpace(uint32_t cp) {
  return tokenizer_internal::IsWhitespace(cp) || (cp >= 0x1C && cp <= 0x1F);
}

std::string Strip(const std::string& s, bool left, bool right, const Value& chars) {
  std::vector<std::string> cps = CodePoints(s);
  std::vector<std::string> set;
  if (chars.is_string()) set = CodePoints(chars.as_string());
  auto strip_it = [&](const std::string& c) {
    if (chars.is_string()) return std::find(set.begin(), set.end(), c) != set.end();
    size_t len;
    return PySpace(tokenizer_internal::DecodeUtf8(c, 0, &len));
  };
  size_t b = 0, e = cps.size();
  while (left && b < e && strip_it(cps[b])) ++b;
  while (right && e > b && strip_it(cps[e - 1])) --e;
  std::string out;
  for (size_t i = b; i < e; ++i) out += cps[i];
  return out;
}

std::string MapAscii(const std::string& s, int mode) {  // 0 lower, 1 upper
  std::string out = s;
  for (char& c : out)
    c = static_cast<char>(mode ? std::toupper(static_cast<unsigned char>(c))
                               : std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string Title(const std::string& s) {
  std::string out = s;
  bool start = true;
  for (char& c : out) {
    unsigned char u = static_cast<unsigned char>(c);
    if (std::isalpha(u)) {
      c = static_cast<char>(start ? std::toupper(u) : std::tolower(u));
      start = false;
    } else {
      start = !(u >= 0x80 || std::isdigit(u));
    }
  }
  return out;
}

Value Arg(const ValueList& args, const ValueDict& kwargs, size_t i, const char* name) {
  if (i < args.size()) return args[i];
  for (const auto& [k, v] : kwargs) {
    if (k == name) return v;
  }
  return Value();
}

absl::StatusOr<Value> Split(const std::string& s, const Value& sep) {
  ValueList out;
  if (sep.is_string() && !sep.as_string().empty()) {
    const std::string& d = sep.as_string();
    size_t start = 0;
    while (true) {
      size_t p = s.find(d, start);
      out.push_back(Value(s.substr(start, p == std::string::npos ? std::string::npos : p - start)));
      if (p == std::string::npos) break;
      start = p + d.size();
    }
  } else if (sep.is_undefined() || sep.is_none()) {
    std::string cur;
    for (const std::string& c : CodePoints(s)) {
      size_t len;
      if (PySpace(tokenizer_internal::DecodeUtf8(c, 0, &len))) {
        if (!cur.empty()) out.push_back(Value(cur)), cur.clear();
      } else {
        cur += c;
      }
    }
    if (!cur.empty()) out.push_back(Value(cur));
  } else {
    return TypeError("split() separator must be a non-empty string");
  }
  return Value::List(std::move(out));
}

absl::StatusOr<std::string> Replace(const std::string& s, const std::string& from,
                                    const std::string& to) {
  if (from.empty()) return s;
  std::string out;
  size_t start = 0, p;
  while ((p = s.find(from, start)) != std::string::npos) {
    out.append(s, start, p - start).append(to);
    if (out.size() > kMaxString) return TypeError("replace() result too large");
    start = p + from.size();
  }
  return out.append(s, start, std::string::npos);
}

absl::StatusOr<ValueList> Iterate(const Value& v) {
  if (v.is_list()) return v.items();
  ValueList out;
  if (v.is_string() && v.as_string().size() > static_cast<size_t>(kMaxSequence)) {
    return TypeError("string too long to iterate");
  }
  if (v.is_dict()) {
    for (const auto& [k, _] : v.entries()) out.push_back(Value(k));
  } else if (v.is_string()) {
    for (const std::string& c : CodePoints(v.as_string())) out.push_back(Value(c));
  }
  return out;
}

}  // namespace

size_t WorkSize(const Value& v) {
  if (v.is_string()) return v.as_string().size();
  if (v.is_list()) return v.items().size();
  if (v.is_dict()) return v.entries().size();
  return 1;
}

std::vector<std::string> CodePoints(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = tokenizer_internal::ValidSequenceLength(s, i);
    if (n == 0) n = 1;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

absl::StatusOr<Value> ApplyFilter(const std::string& name, const Value& v, const ValueList& args,
                                  const ValueDict& kwargs) {
  if (name == "trim") return Value(Strip(v.ToString(), true, true, Arg(args, kwargs, 0, "chars")));
  if (name == "length" || name == "count") {
    if (v.is_string()) {
      int64_t n = 0;  // code points: count the non-continuation bytes
      for (char c : v.as_string()) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
      return Value(n);
    }
    if (v.is_list()) return Value(static_cast<int64_t>(v.items().size()));
    if (v.is_dict()) return Value(static_cast<int64_t>(v.entries().size()));
    if (v.is_undefined()) return Value(0);
    return TypeError(absl::StrCat("object of type '", v.TypeName(), "' has no len()"));
  }
  if (name == "upper" || name == "lower") return Value(MapAscii(v.ToString(), name == "upper"));
  if (name == "title") return Value(Title(v.ToString()));
  if (name == "capitalize") {
    std::string s = MapAscii(v.ToString(), 0);
    if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
    return Value(s);
  }
  if (name == "default" || name == "d") {
    bool boolean = Arg(args, kwargs, 1, "boolean").Truthy();
    if (v.is_undefined() || (boolean && !v.Truthy())) {
      Value d = Arg(args, kwargs, 0, "default_value");
      return d.is_undefined() ? Value("") : d;
    }
    return v;
  }
  if (name == "string") return Value(v.ToString());
  if (name == "safe" || name == "e" || name == "escape") {
    if (name != "safe") return TypeError("the escape filter is not supported");
    return v;
  }
  if (name == "list") {
    absl::StatusOr<ValueList> items = Iterate(v);
    if (!items.ok()) return items.status();
    return Value::List(*std::move(items));
  }
  if (name == "first" || name == "last") {
    absl::StatusOr<ValueList> it = Iterate(v);
    if (!it.ok()) return it.status();
    ValueList& items = *it;
    if (items.empty()) return Value();
    return name == "first" ? items.front() : items.back();
  }
  if (name == "reverse") {
    absl::StatusOr<ValueList> it = Iterate(v);
    if (!it.ok()) return it.status();
    ValueList& items = *it;
    std::reverse(items.begin(), items.end());
    if (v.is_string()) {
      std::string s;
      for (const Value& c : items) s += c.as_string();
      return Value(s);
    }
    return Value::List(std::move(items));
  }
  if (name == "join") {
    std::string sep = Arg(args, kwargs, 0, "d").ToString();
    std::string out;
    absl::StatusOr<ValueList> items = Iterate(v);
    if (!items.ok()) return items.status();
    for (size_t i = 0; i < items->size(); ++i) {
      out += (i ? sep : "") + (*items)[i].ToString();
      if (out.size() > kMaxString) return TypeError("join() result too large");
    }
    return Value(out);
  }
  if (name == "replace") {
    absl::StatusOr<std::string> r = Replace(v.ToString(), Arg(args, kwargs, 0, "old").ToString(),
                                            Arg(args, kwargs, 1, "new").ToString());
    if (!r.ok()) return r.status();
    return Value(*std::move(r));
  }
  if (name == "int") {
    if (v.is_number()) return Value(static_cast<int64_t>(v.as_float()));
    if (v.is_string())
      return Value(static_cast<int64_t>(std::strtoll(v.as_string().c_str(), nullptr, 10)));
    return Value(0);
  }
  if (name == "float") {
    if (v.is_number()) return Value(v.as_float());
    if (v.is_string()) return Value(std::strtod(v.as_string().c_str(), nullptr));
    return Value(0.0);
  }
  if (name == "abs") {
    if (v.kind() == Value::Kind::kInt) return Value(static_cast<int64_t>(std::llabs(v.as_int())));
    if (v.is_number()) return Value(std::fabs(v.as_float()));
    return TypeError("abs of a non-number");
  }
  if (name == "tojson") {
    Value indent = Arg(args, kwargs, 0, "indent");
    int64_t n = indent.is_number() ? indent.as_int() : -1;
    if (n > 64) return TypeError("tojson indent above 64 is not supported");
    return Value(v.ToJson(static_cast<int>(n)));
  }
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    // selectattr("role", "equalto", "system"); select("defined"); no test = truthiness.
    const bool by_attr = name == "selectattr" || name == "rejectattr";
    const bool keep = name == "selectattr" || name == "select";
    size_t t = by_attr ? 1 : 0;
    if (by_attr && (args.empty() || !args[0].is_string())) {
      return TypeError(absl::StrCat(name, " needs an attribute name"));
    }
    ValueList out;
    absl::StatusOr<ValueList> items = Iterate(v);
    if (!items.ok()) return items.status();
    for (const Value& item : *items) {
      Value x = by_attr ? item.Get(args[0].as_string()) : item;
      bool pass;
      if (args.size() > t) {
        ValueList test_args(args.begin() + t + 1, args.end());
        absl::StatusOr<bool> r = ApplyTest(args[t].ToString(), x, test_args);
        if (!r.ok()) return r.status();
        pass = *r;
      } else {
        pass = x.Truthy();
      }
      if (pass == keep) out.push_back(item);
    }
    return Value::List(std::move(out));
  }
  if (name == "map") {
    Value attr = Arg({}, kwargs, 0, "attribute");
    ValueList out;
    absl::StatusOr<ValueList> items = Iterate(v);
    if (!items.ok()) return items.status();
    for (const Value& item : *items) {
      if (attr.is_string()) {
        Value x = item.Get(attr.as_string());
        out.push_back(x.is_undefined() ? Arg({}, kwargs, 0, "default") : x);
      } else if (!args.empty()) {
        ValueList rest(args.begin() + 1, args.end());
        absl::StatusOr<Value> x = ApplyFilter(args[0].ToString(), item, rest, {});
        if (!x.ok()) return x.status();
        out.push_back(*std::move(x));
      } else {
        return TypeError("map needs attribute= or a filter name");
      }
    }
    return Value::List(std::move(out));
  }
  if (name == "items") {
    if (!v.is_dict()) return TypeError("items of a non-dict");
    ValueList out;
    for (const auto& [k, x] : v.entries()) out.push_back(Value::List({Value(k), x}));
    return Value::List(std::move(out));
  }
  return TypeError(absl::StrCat("unsupported filter '", name, "'"));
}

absl::StatusOr<bool> ApplyTest(const std::string& name, const Value& v, const ValueList& args) {
  using K = Value::Kind;
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.kind() == K::kInt || v.kind() == K::kFloat;
  if (name == "integer") return v.kind() == K::kInt;
  if (name == "float") return v.kind() == K::kFloat;
  if (name == "boolean") return v.kind() == K::kBool;
  if (name == "true") return v.kind() == K::kBool && v.as_bool();
  if (name == "false") return v.kind() == K::kBool && !v.as_bool();
  if (name == "mapping") return v.is_dict();
  if (name == "sequence" || name == "iterable") return v.is_list() || v.is_dict() || v.is_string();
  if (name == "callable") return v.kind() == K::kFunction;
  if (name == "even" || name == "odd") {
    if (v.kind() != K::kInt) return TypeError("even/odd test of a non-integer");
    return (v.as_int() % 2 == 0) == (name == "even");
  }
  if (name == "divisibleby") {
    if (args.empty() || args[0].kind() != K::kInt || args[0].as_int() == 0 || v.kind() != K::kInt) {
      return TypeError("divisibleby needs two integers");
    }
    return v.as_int() % args[0].as_int() == 0;
  }
  if (name == "eq" || name == "equalto" || name == "sameas") {
    return !args.empty() && v.Equals(args[0]);
  }
  if (name == "ne") return args.empty() || !v.Equals(args[0]);
  if (name == "in") {
    if (args.empty()) return false;
    absl::StatusOr<ValueList> items = Iterate(args[0]);
    if (!items.ok()) return items.status();
    for (const Value& x : *items) {
      if (x.Equals(v)) return true;
    }
    return false;
  }
  return TypeError(absl::StrCat("unsupported test '", name, "'"));
}

Value BoundMethod(const Value& self, const std::string& name) {
  if (self.is_string()) {
    const std::string s = self.as_string();
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      return Value::Func([s, name](const ValueList& a, const ValueDict&) -> absl::StatusOr<Value> {
        Value chars = a.empty() ? Value() : a[0];
        return Value(Strip(s, name != "rstrip", name != "lstrip", chars));
      });
    }
    if (name == "startswith" || name == "endswith") {
      return Value::Func([s, name](const ValueList& a, const ValueDict&) -> absl::StatusOr<Value> {
        if (a.empty()) return TypeError(absl::StrCat(name, "() needs an argument"));
        ValueList options = a[0].is_list() ? a[0].items() : ValueList{a[0]};
        for (const Value& o : options) {
          const std::string& p = o.ToString();
          bool hit = p.size() <= s.size() &&
                     (name == "startswith" ? s.compare(0, p.size(), p) == 0
                                           : s.compare(s.size() - p.size(), p.size(), p) == 0);
          if (hit) return Value(true);
        }
        return Value(false);
      });
    }
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
      return Value::Func([self, name](const ValueList&, const ValueDict&) {
        return ApplyFilter(name, self, {}, {});
      });
    }
    if (name == "split") {
      return Value::Func(
          [s](const ValueList& a, const ValueDict& kw) { return Split(s, Arg(a, kw, 0, "sep")); });
    }
    if (name == "replace") {
      return Value::Func([self](const ValueList& a, const ValueDict& kw) {
        return ApplyFilter("replace", self, a, kw);
      });
    }
    return Value();
  }
  if (self.is_dict()) {
    if (name == "get") {
      return Value::Func([self](const ValueList& a, const ValueDict&) -> absl::StatusOr<Value> {
        if (a.empty()) return TypeError("get() needs a key");
        Value v = self.Get(a[0].ToString());
        if (v.is_undefined()) return a.size() > 1 ? a[1] : Value::None();
        return v;
      });
    }
    if (name == "items" || name == "keys" || name == "values") {
      return Value::Func([self, name](const ValueList&, const ValueDict&) -> absl::StatusOr<Value> {
        ValueList out;
        for (const auto& [k, v] : self.entries()) {
          out.push_back(name == "items"  ? Value::List({Value(k), v})
                        : name == "keys" ? Value(k)
                                         : v);
        }
        return Value::List(std::move(out));
      });
    }
  }
  return Value();
}

ValueDict BuiltinGlobals() {
  ValueDict g;
  g.emplace_back(
      "raise_exception",
      Value::Func([](const ValueList& a, const ValueDict&) -> absl::StatusOr<Value> {
        return absl::InvalidArgumentError(absl::StrCat("chat template rejected the conversation: ",
                                                       a.empty() ? "" : a[0].ToString()));
      }));
  g.emplace_back("strftime_now",
                 Value::Func([](const ValueList& a, const ValueDict&) -> absl::StatusOr<Value> {
                   // transformers' helper: the current local time through strftime.
                   if (a.empty() || !a[0].is_string())
                     return TypeError("strftime_now() needs a format string");
                   std::time_t now = std::time(nullptr);
                   std::tm tm{};
                   localtime_r(&now, &tm);
                   char buf[256];
                   size_t n = std::strftime(buf, sizeof(buf), a[0].as_string().c_str(), &tm);
                   return Value(std::string(buf, n));
                 }));
  g.emplace_back("namespace",
                 Value::Func([](const ValueList&, const ValueDict& kw) -> absl::StatusOr<Value> {
                   return Value::Dict(kw);
                 }));
  g.emplace_back("range",
                 Value::Func([](const ValueList& a, const ValueDict&) -> absl::StatusOr<Value> {
                   for (const Value& x : a) {
                     if (x.kind() != Value::Kind::kInt) return TypeError("range() needs integers");
                   }
                   if (a.empty() || a.size() > 3)
                     return TypeError("range() takes 1 to 3 arguments");
                   int64_t start = a.size() > 1 ? a[0].as_int() : 0;
                   int64_t stop = a.size() > 1 ? a[1].as_int() : a[0].as_int();
                   int64_t step = a.size() > 2 ? a[2].as_int() : 1;
                   if (step == 0) return TypeError("range() step must not be zero");
                   ValueList out;
                   for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
                     if (static_cast<int64_t>(out.size()) >= kMaxSequence)
                       return TypeError("range() too long");
                     out.push_back(Value(i));
                   }
                   return Value::List(std::move(out));
                 }));
  return g;
}

}  // namespace tpserve::jinja
