// Built-in filters, tests, methods and globals of the Jinja-subset
// interpreter (template.h), each with the Python/jinja2 behaviour chat
// templates rely on.
//
//   TPS_ASSIGN_OR_RETURN(Value v, ApplyFilter("trim", Value("  x "), {}, {}));
#ifndef TPSERVE_ROUTER_TOKENIZER_JINJA_BUILTINS_H_
#define TPSERVE_ROUTER_TOKENIZER_JINJA_BUILTINS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "router/tokenizer/jinja/value.h"

namespace tpserve::jinja {

// Largest range() / string repetition / iterated string the interpreter builds.
inline constexpr int64_t kMaxSequence = 1 << 20;
// Bytes of any one string value (chat prompts are far smaller).
inline constexpr size_t kMaxString = Value::kDefaultLimit;

// Size a value "weighs" for the interpreter's work budget: string bytes,
// list/dict entries.
size_t WorkSize(const Value& v);

absl::StatusOr<Value> ApplyFilter(const std::string& name, const Value& v, const ValueList& args,
                                  const ValueDict& kwargs);
absl::StatusOr<bool> ApplyTest(const std::string& name, const Value& v, const ValueList& args);

// `self.name` as a callable for the str and dict methods templates use
// (strip, startswith, split, get, items, ...); Undefined when there is none.
Value BoundMethod(const Value& self, const std::string& name);

// range, namespace, raise_exception.
ValueDict BuiltinGlobals();

// Python-style code point access to UTF-8 strings.
std::vector<std::string> CodePoints(const std::string& s);

}  // namespace tpserve::jinja

#endif  // TPSERVE_ROUTER_TOKENIZER_JINJA_BUILTINS_H_
