// Parser for the Jinja subset chat templates use, with Hugging Face's
// environment settings (trim_blocks, lstrip_blocks, no trailing newline):
// {{ expr }}, {% if/elif/else %}, {% for a[, b] in xs [if c] %}...{% else %},
// {% set x = e %} / {% set ns.x = e %}, {# comments #}, "-" whitespace control;
// expressions with literals, lists, dicts, attributes, subscripts, slices,
// calls, filters, tests, arithmetic, comparisons, and/or/not, in, ternaries.
// Anything else ({% macro %}, {% raw %}, ...) is an InvalidArgument error
// that names the construct and where it is.
//
//   TPS_ASSIGN_OR_RETURN(NodeList program, ParseTemplate(source));
#ifndef TPSERVE_ROUTER_TOKENIZER_JINJA_PARSER_H_
#define TPSERVE_ROUTER_TOKENIZER_JINJA_PARSER_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "router/tokenizer/jinja/ast.h"

namespace tpserve::jinja {

absl::StatusOr<NodeList> ParseTemplate(std::string_view source);

}  // namespace tpserve::jinja

#endif  // TPSERVE_ROUTER_TOKENIZER_JINJA_PARSER_H_
