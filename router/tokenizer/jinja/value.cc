#include "router/tokenizer/jinja/value.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "router/tokenizer/unicode.h"

namespace tpserve::jinja {

Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

Value Value::List(ValueList items) {
  Value v;
  v.kind_ = Kind::kList;
  v.list_ = std::make_shared<ValueList>(std::move(items));
  return v;
}

Value Value::Dict(ValueDict items) {
  Value v;
  v.kind_ = Kind::kDict;
  v.dict_ = std::make_shared<ValueDict>(std::move(items));
  return v;
}

Value Value::Func(Function fn) {
  Value v;
  v.kind_ = Kind::kFunction;
  v.fn_ = std::make_shared<Function>(std::move(fn));
  return v;
}

Value Value::Get(const std::string& key) const {
  if (kind_ != Kind::kDict) return Value();
  for (const auto& [k, v] : *dict_) {
    if (k == key) return v;
  }
  return Value();
}

void Value::Set(const std::string& key, Value v) const {
  for (auto& [k, old] : *dict_) {
    if (k == key) {
      old = std::move(v);
      return;
    }
  }
  dict_->emplace_back(key, std::move(v));
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
    case Kind::kInt:
      return int_ != 0;
    case Kind::kFloat:
      return float_ != 0;
    case Kind::kString:
      return !str_->empty();
    case Kind::kList:
      return !list_->empty();
    case Kind::kDict:
      return !dict_->empty();
    case Kind::kFunction:
      return true;
  }
  return false;
}

bool Value::Equals(const Value& o) const {
  auto numeric = [](Kind k) { return k == Kind::kBool || k == Kind::kInt || k == Kind::kFloat; };
  if (numeric(kind_) && numeric(o.kind_)) return as_float() == o.as_float();
  if (kind_ != o.kind_) return false;
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return true;
    case Kind::kString:
      return *str_ == *o.str_;
    case Kind::kList:
      if (list_->size() != o.list_->size()) return false;
      for (size_t i = 0; i < list_->size(); ++i) {
        if (!(*list_)[i].Equals((*o.list_)[i])) return false;
      }
      return true;
    case Kind::kDict:
      if (dict_->size() != o.dict_->size()) return false;
      for (const auto& [k, v] : *dict_) {
        if (!o.Get(k).Equals(v)) return false;
      }
      return true;
    default:
      return fn_ == o.fn_;
  }
}

namespace {

std::string FloatRepr(double f) {
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  if (std::isnan(f)) return "nan";
  char buf[64];
  for (int prec = 1; prec <= 17; ++prec) {  // shortest round-trip, as Python
    std::snprintf(buf, sizeof(buf), "%.*g", prec, f);
    if (std::strtod(buf, nullptr) == f) break;
  }
  std::string s = buf;
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string PyQuote(const std::string& s) {
  char q = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    if (c == q || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
  return out + q;
}

std::string JsonQuote(const std::string& s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c == '\n') {
      out += "\\n", ++i;
    } else if (c == '\t') {
      out += "\\t", ++i;
    } else if (c == '\r') {
      out += "\\r", ++i;
    } else if (c == '\b') {
      out += "\\b", ++i;
    } else if (c == '\f') {
      out += "\\f", ++i;
    } else if (c < 0x20) {
      // transformers' tojson is json.dumps(ensure_ascii=False): only control
      // characters are escaped; other text stays UTF-8.
      out += absl::StrCat("\\u", absl::Hex(c, absl::kZeroPad4));
      ++i;
    } else {
      out += static_cast<char>(c);
      ++i;
    }
  }
  return out + "\"";
}

}  // namespace

std::string Value::ToString(size_t limit) const {
  switch (kind_) {
    case Kind::kUndefined:
      return "";
    case Kind::kString:
      return *str_;
    default:
      return Repr(limit);
  }
}

std::string Value::Repr(size_t limit) const {
  std::string out;
  ReprInto(&out, limit);
  return out;
}

std::string Value::ToJson(int indent, size_t limit) const {
  std::string out;
  JsonInto(&out, indent, 0, limit);
  return out;
}

void Value::ReprInto(std::string* out, size_t limit) const {
  if (out->size() > limit) return;
  switch (kind_) {
    case Kind::kUndefined:
      return;
    case Kind::kNone:
      *out += "None";
      return;
    case Kind::kBool:
      *out += int_ ? "True" : "False";
      return;
    case Kind::kInt:
      absl::StrAppend(out, int_);
      return;
    case Kind::kFloat:
      *out += FloatRepr(float_);
      return;
    case Kind::kString:
      *out += PyQuote(*str_);
      return;
    case Kind::kList:
      *out += "[";
      for (size_t i = 0; i < list_->size() && out->size() <= limit; ++i) {
        if (i) *out += ", ";
        (*list_)[i].ReprInto(out, limit);
      }
      *out += "]";
      return;
    case Kind::kDict:
      *out += "{";
      for (size_t i = 0; i < dict_->size() && out->size() <= limit; ++i) {
        if (i) *out += ", ";
        *out += PyQuote((*dict_)[i].first) + ": ";
        (*dict_)[i].second.ReprInto(out, limit);
      }
      *out += "}";
      return;
    case Kind::kFunction:
      *out += "<function>";
      return;
  }
}

void Value::JsonInto(std::string* out, int indent, int depth, size_t limit) const {
  if (out->size() > limit) return;
  std::string nl, pad, pad_in;
  if (indent >= 0) {
    nl = "\n";
    pad = std::string(indent * depth, ' ');
    pad_in = std::string(indent * (depth + 1), ' ');
  }
  const char* sep = indent >= 0 ? "," : ", ";
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
    case Kind::kFunction:
      *out += "null";
      return;
    case Kind::kBool:
      *out += int_ ? "true" : "false";
      return;
    case Kind::kInt:
      absl::StrAppend(out, int_);
      return;
    case Kind::kFloat:
      *out += FloatRepr(float_);
      return;
    case Kind::kString:
      *out += JsonQuote(*str_);
      return;
    case Kind::kList:
      if (list_->empty()) {
        *out += "[]";
        return;
      }
      *out += "[" + nl;
      for (size_t i = 0; i < list_->size() && out->size() <= limit; ++i) {
        if (i) *out += std::string(sep) + nl;
        *out += pad_in;
        (*list_)[i].JsonInto(out, indent, depth + 1, limit);
      }
      *out += nl + pad + "]";
      return;
    case Kind::kDict:
      if (dict_->empty()) {
        *out += "{}";
        return;
      }
      *out += "{" + nl;
      for (size_t i = 0; i < dict_->size() && out->size() <= limit; ++i) {
        if (i) *out += std::string(sep) + nl;
        *out += pad_in + JsonQuote((*dict_)[i].first) + ": ";
        (*dict_)[i].second.JsonInto(out, indent, depth + 1, limit);
      }
      *out += nl + pad + "}";
      return;
  }
}

const char* Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "undefined";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kList:
      return "list";
    case Kind::kDict:
      return "dict";
    case Kind::kFunction:
      return "function";
  }
  return "?";
}

}  // namespace tpserve::jinja
