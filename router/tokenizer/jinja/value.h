// Value: the dynamic values of the Jinja-subset interpreter that renders chat
// templates — Python's None/bool/int/float/str/list/dict plus Jinja's
// Undefined and callables — with Python's truthiness, equality and str().
//
//   Value msg = Value::Dict({{"role", Value("user")}, {"content", Value("hi")}});
//   Value msgs = Value::List({msg});
//   msg.Get("role").ToString();  // "user"
#ifndef TPSERVE_ROUTER_TOKENIZER_JINJA_VALUE_H_
#define TPSERVE_ROUTER_TOKENIZER_JINJA_VALUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tpserve::jinja {

class Value;
using ValueList = std::vector<Value>;
// Insertion-ordered, like Python's dict.
using ValueDict = std::vector<std::pair<std::string, Value>>;
// Positional args, then keyword args.
using Function =
    std::function<absl::StatusOr<Value>(const ValueList& args, const ValueDict& kwargs)>;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kFunction };

  Value() = default;  // Undefined
  explicit Value(bool b) : kind_(Kind::kBool), int_(b) {}
  explicit Value(int64_t i) : kind_(Kind::kInt), int_(i) {}
  explicit Value(int i) : kind_(Kind::kInt), int_(i) {}
  explicit Value(double f) : kind_(Kind::kFloat), float_(f) {}
  explicit Value(std::string s)
      : kind_(Kind::kString), str_(std::make_shared<const std::string>(std::move(s))) {}
  explicit Value(const char* s) : Value(std::string(s)) {}
  static Value None();
  static Value List(ValueList items);
  static Value Dict(ValueDict items);
  static Value Func(Function fn);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }

  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const { return int_; }
  double as_float() const { return kind_ == Kind::kFloat ? float_ : static_cast<double>(int_); }
  const std::string& as_string() const { return *str_; }
  const ValueList& items() const { return *list_; }
  // Dicts are shared: namespace() objects are mutated through `set ns.x = ...`.
  ValueDict& entries() const { return *dict_; }
  const Function& function() const { return *fn_; }

  // dict lookup; Undefined when absent or not a dict.
  Value Get(const std::string& key) const;
  void Set(const std::string& key, Value v) const;

  bool Truthy() const;                    // Python truthiness
  bool Equals(const Value& other) const;  // Python ==

  // Python str() / repr() / json.dumps(ensure_ascii=False). Output stops
  // growing soon after `limit` bytes (nested shared lists can be
  // exponentially large): a result longer than `limit` means "too large".
  static constexpr size_t kDefaultLimit = 16 << 20;
  std::string ToString(size_t limit = kDefaultLimit) const;  // Undefined -> ""
  std::string Repr(size_t limit = kDefaultLimit) const;
  std::string ToJson(int indent = -1, size_t limit = kDefaultLimit) const;
  const char* TypeName() const;

 private:
  void ReprInto(std::string* out, size_t limit) const;
  void JsonInto(std::string* out, int indent, int depth, size_t limit) const;

  Kind kind_ = Kind::kUndefined;
  int64_t int_ = 0;
  double float_ = 0;
  // Immutable and shared, so copying values (loops, lists) never copies text.
  std::shared_ptr<const std::string> str_;
  std::shared_ptr<ValueList> list_;
  std::shared_ptr<ValueDict> dict_;
  std::shared_ptr<Function> fn_;
};

}  // namespace tpserve::jinja

#endif  // TPSERVE_ROUTER_TOKENIZER_JINJA_VALUE_H_
