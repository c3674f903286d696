// Template: a parsed Jinja-subset template (parser.h) and its interpreter,
// with jinja2's semantics for the features chat templates use: Python-style
// values (value.h), loop.index/first/last/..., scoped `set`, namespace(),
// raise_exception(), the common filters (trim, length, default, tojson, join,
// upper, lower, ...), tests (defined, none, string, ...), and str/dict
// methods (strip, startswith, split, get, items, ...). Unsupported features
// are InvalidArgument errors naming them; rendering is bounded (steps, range
// sizes, value and output length: RenderLimits) so a hostile template cannot
// exhaust time or memory; nesting is bounded when parsing (parser.h).
//
//   TPS_ASSIGN_OR_RETURN(Template t, Template::Parse("{{ 'Hi ' + name }}"));
//   TPS_ASSIGN_OR_RETURN(std::string s, t.Render({{"name", Value("Ann")}}));
#ifndef TPSERVE_ROUTER_TOKENIZER_JINJA_TEMPLATE_H_
#define TPSERVE_ROUTER_TOKENIZER_JINJA_TEMPLATE_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "router/tokenizer/jinja/ast.h"
#include "router/tokenizer/jinja/value.h"

namespace tpserve::jinja {

// Bounds of one render; reaching one is RESOURCE_EXHAUSTED naming it. Every
// expression evaluation is a step, and building a value costs its size / 8.
struct RenderLimits {
  int64_t max_steps = 20'000'000;
  size_t max_output_bytes = 64 << 20;
};

class Template {
 public:
  static absl::StatusOr<Template> Parse(std::string_view source);

  // Renders with `globals` as the template's variables (plus the built-in
  // range, namespace and raise_exception).
  absl::StatusOr<std::string> Render(const ValueDict& globals,
                                     const RenderLimits& limits = RenderLimits()) const;

 private:
  explicit Template(NodeList program) : program_(std::move(program)) {}
  NodeList program_;
};

}  // namespace tpserve::jinja

#endif  // TPSERVE_ROUTER_TOKENIZER_JINJA_TEMPLATE_H_
