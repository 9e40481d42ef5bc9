"""Evaluates the Terraform expressions of variable validations, so tests can run them on inputs.

The Terraform in the venv (1.0.3) is too old to evaluate them, and no newer one can be installed
here, so this walks python-hcl2's parse tree of the condition with Terraform's semantics for the
part of the language the validations use: literals, templates, `var.*` and attribute/index
access, for expressions (tuple and object, with `if`), conditionals, the operators (both sides of
`&&` and `||` are evaluated, as Terraform does: a null there is an error, not false) and the
functions below. Anything else raises TfEvalError, so a test never passes on a construct this
does not understand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
from lark import Token, Tree


class TfEvalError(Exception):
    """The expression is invalid for these inputs (Terraform would report an error)."""


def _not_null(name: str, *values: Any) -> None:
    if any(v is None for v in values):
        raise TfEvalError(f"{name}: argument must not be null")


def _regex(pattern: str, text: str) -> Any:
    _not_null("regex", pattern, text)
    match = re.search(pattern, text)
    if match is None:
        raise TfEvalError(f"regex: {pattern!r} does not match {text!r}")
    return match.group(0) if not match.groups() else list(match.groups())


def _replace(text: str, old: str, new: str) -> str:
    _not_null("replace", text, old, new)
    if len(old) > 1 and old.startswith("/") and old.endswith("/"):
        return re.sub(old[1:-1], new, text)
    return text.replace(old, new)


def _coalesce(*values: Any) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    raise TfEvalError("coalesce: no non-null, non-empty-string arguments")


def _flatten(value: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in value:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _length(value: Any) -> int:
    _not_null("length", value)
    return len(value)


def _contains(collection: list[Any], value: Any) -> bool:
    _not_null("contains", collection, value)
    return value in collection


def _all(values: list[Any], name: str, combine: Callable[[list[bool]], bool]) -> bool:
    _not_null(name, values)
    if not all(isinstance(v, bool) for v in values):
        raise TfEvalError(f"{name}: every element must be a bool")
    return combine(values)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "alltrue": lambda values: _all(values, "alltrue", all),
    "anytrue": lambda values: _all(values, "anytrue", any),
    "length": _length,
    "keys": lambda value: sorted(value),
    "values": lambda value: [value[k] for k in sorted(value)],
    "contains": _contains,
    "coalesce": _coalesce,
    "replace": _replace,
    "regex": _regex,
    "flatten": _flatten,
    "concat": lambda *lists: [item for part in lists for item in part],
    "upper": lambda text: text.upper(),
    "lower": lambda text: text.lower(),
    "startswith": lambda text, prefix: text.startswith(prefix),
    "endswith": lambda text, suffix: text.endswith(suffix),
    "floor": math.floor,
    "toset": lambda values: sorted(set(values)),
    "distinct": lambda values: list(dict.fromkeys(values)),
    "lookup": lambda mapping, key, *default: mapping[key] if key in mapping else default[0],
}


def _unescape(text: str) -> str:
    return re.sub(
        r'\\([\\"nt])', lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text
    )


def _to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value is None or isinstance(value, (list, dict)):
        raise TfEvalError(f"cannot interpolate {value!r} into a string")
    return str(value)


def _trees(node: Tree) -> list[Tree]:
    return [c for c in node.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]


def _name(node: Tree) -> str:
    """The text of an `identifier` tree."""
    return str(node.children[0])


class Evaluator:
    def __init__(self, scope: Mapping[str, Any]):
        self.scope = dict(scope)

    def eval(self, node: Any) -> Any:
        if isinstance(node, Token):
            raise TfEvalError(f"unexpected token {node!r}")
        handler = getattr(self, f"_{node.data}", None)
        if handler is None:
            raise TfEvalError(f"this evaluator does not understand {node.data}")
        return handler(node)

    def _expr_term(self, node: Tree) -> Any:
        (inner,) = _trees(node)
        return self.eval(inner)

    def _identifier(self, node: Tree) -> Any:
        name = _name(node)
        if name not in self.scope:
            raise TfEvalError(f"unknown name {name}")
        return self.scope[name]

    def _int_lit(self, node: Tree) -> int:
        return int(str(node.children[0]))

    def _float_lit(self, node: Tree) -> float:
        return float(str(node.children[0]))

    def _literal_value(self, node: Tree) -> Any:
        return {"true": True, "false": False, "null": None}[str(node.children[0])]

    def _string(self, node: Tree) -> str:
        parts = []
        for part in _trees(node):
            for child in part.children:
                if isinstance(child, Token):
                    parts.append(_unescape(str(child)))
                else:
                    (inner,) = _trees(child)
                    parts.append(_to_string(self.eval(inner)))
        return "".join(parts)

    def _get_attr_expr_term(self, node: Tree) -> Any:
        base, attr = _trees(node)
        value = self.eval(base)
        name = _name(_trees(attr)[0])
        if not isinstance(value, Mapping) or name not in value:
            raise TfEvalError(f"unsupported attribute {name} on {value!r}")
        return value[name]

    def _index_expr_term(self, node: Tree) -> Any:
        base, index = _trees(node)
        value = self.eval(base)
        (key_node,) = _trees(index)
        key = self.eval(key_node)
        try:
            return value[key]
        except (KeyError, IndexError, TypeError) as exc:
            raise TfEvalError(f"invalid index {key!r}") from exc

    def _function_call(self, node: Tree) -> Any:
        trees = _trees(node)
        name = _name(trees[0])
        args = _trees(trees[1]) if len(trees) > 1 else []
        if name == "can":
            try:
                self.eval(args[0])
            except TfEvalError:
                return False
            return True
        if name == "try":
            for arg in args:
                try:
                    return self.eval(arg)
                except TfEvalError:
                    continue
            raise TfEvalError("try: no argument could be evaluated")
        if name not in FUNCTIONS:
            raise TfEvalError(f"this evaluator does not know the function {name}")
        values = [self.eval(a) for a in args]
        try:
            return FUNCTIONS[name](*values)
        except TfEvalError:
            raise
        except (TypeError, KeyError, AttributeError, re.error) as exc:
            raise TfEvalError(f"{name}: {exc}") from exc

    def _binary_op(self, node: Tree) -> Any:
        left_node, term = _trees(node)
        operator_node, right_node = _trees(term)
        operator = str(operator_node.children[0])
        left, right = self.eval(left_node), self.eval(right_node)  # both, as Terraform does
        if operator in {"==", "!="}:
            return (left == right) is (operator == "==")
        if operator in {"&&", "||"}:
            if not isinstance(left, bool) or not isinstance(right, bool):
                raise TfEvalError(f"{operator} needs two bools, got {left!r} and {right!r}")
            return (left and right) if operator == "&&" else (left or right)
        if left is None or right is None or isinstance(left, bool) or isinstance(right, bool):
            raise TfEvalError(f"{operator} needs numbers, got {left!r} and {right!r}")
        operations: dict[str, Callable[[Any, Any], Any]] = {
            "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
            "+": lambda a, b: a + b, "-": lambda a, b: a - b,
            "*": lambda a, b: a * b, "/": lambda a, b: a / b, "%": lambda a, b: a % b,
        }  # fmt: skip
        return operations[operator](float(left), float(right))

    def _unary_op(self, node: Tree) -> Any:
        operator = str(node.children[0])
        value = self.eval(_trees(node)[0])
        if operator == "!":
            if not isinstance(value, bool):
                raise TfEvalError(f"! needs a bool, got {value!r}")
            return not value
        return -value

    def _conditional(self, node: Tree) -> Any:
        condition, yes, no = _trees(node)
        chosen = self.eval(condition)
        if not isinstance(chosen, bool):
            raise TfEvalError(f"a condition must be a bool, got {chosen!r}")
        return self.eval(yes if chosen else no)

    def _tuple(self, node: Tree) -> list[Any]:
        return [self.eval(item) for item in _trees(node)]

    def _object(self, node: Tree) -> dict[str, Any]:
        out = {}
        for element in _trees(node):
            key_node, value_node = _trees(element)
            (key_expr,) = _trees(key_node)
            inner = _trees(key_expr)
            key = (
                _name(inner[0]) if inner and inner[0].data == "identifier" else self.eval(key_expr)
            )
            out[str(key)] = self.eval(value_node)
        return out

    def _iterate(self, intro: Tree) -> list[dict[str, Any]]:
        trees = _trees(intro)
        names = [_name(t) for t in trees if t.data == "identifier"]
        collection = self.eval(trees[-1])
        if isinstance(collection, Mapping):
            pairs = [(k, collection[k]) for k in sorted(collection)]
        elif isinstance(collection, list):
            pairs = list(enumerate(collection))
        else:
            raise TfEvalError(f"cannot iterate over {collection!r}")
        if len(names) == 1:
            return [{names[0]: value} for _, value in pairs]
        return [{names[0]: key, names[1]: value} for key, value in pairs]

    def _bindings(self, node: Tree) -> tuple[list[Evaluator], list[Tree]]:
        trees = _trees(node)
        condition = trees[-1] if trees[-1].data == "for_cond" else None
        body = trees[1 : -1 if condition is not None else None]
        scopes = []
        for binding in self._iterate(trees[0]):
            inner = Evaluator({**self.scope, **binding})
            if condition is not None:
                keep = inner.eval(_trees(condition)[0])
                if not isinstance(keep, bool):
                    raise TfEvalError(f"a for `if` must be a bool, got {keep!r}")
                if not keep:
                    continue
            scopes.append(inner)
        return scopes, body

    def _for_tuple_expr(self, node: Tree) -> list[Any]:
        scopes, body = self._bindings(node)
        return [inner.eval(body[0]) for inner in scopes]

    def _for_object_expr(self, node: Tree) -> dict[str, Any]:
        scopes, body = self._bindings(node)
        grouped = any(isinstance(c, Token) and str(c) == "..." for c in node.children)
        out: dict[str, Any] = {}
        for inner in scopes:
            key, value = str(inner.eval(body[0])), inner.eval(body[1])
            if grouped:
                out.setdefault(key, []).append(value)
            elif key in out:
                raise TfEvalError(f"duplicate object key {key!r}")
            else:
                out[key] = value
        return out


def evaluate(expression: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate one Terraform expression (`${...}` as python-hcl2 serialises it, or bare)."""
    text = (
        expression[2:-1] if expression.startswith("${") and expression.endswith("}") else expression
    )
    tree = hcl2.parses_to_tree(f"x = {text}\n")
    attribute = next(t for t in tree.iter_subtrees_topdown() if t.data == "attribute")
    return Evaluator(scope).eval(_trees(attribute)[-1])


# --- variables.tf ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    name: str
    type: Tree | None
    default: Any
    required: bool
    # (condition, error message) of each validation block, in order.
    validations: tuple[tuple[Tree, str], ...]


def _attributes(body: Tree) -> dict[str, Tree]:
    return {_name(_trees(a)[0]): _trees(a)[-1] for a in _trees(body) if a.data == "attribute"}


def read_variables(path: Path) -> dict[str, Variable]:
    """Every variable block of a .tf file: type, default and validations, unevaluated."""
    tree = hcl2.parses_to_tree(path.read_text(encoding="utf-8"))
    found = {}
    for block in tree.iter_subtrees_topdown():
        if block.data != "block" or _name(_trees(block)[0]) != "variable":
            continue
        label, body = _trees(block)[1], _trees(block)[-1]
        name = Evaluator({}).eval(label)
        attributes = _attributes(body)
        checks = []
        for inner in _trees(body):
            if inner.data == "block" and _name(_trees(inner)[0]) == "validation":
                spec = _attributes(_trees(inner)[-1])
                checks.append((spec["condition"], Evaluator({}).eval(spec["error_message"])))
        default = attributes.get("default")
        found[name] = Variable(
            name=name,
            type=attributes.get("type"),
            default=Evaluator({}).eval(default) if default is not None else None,
            required=default is None,
            validations=tuple(checks),
        )
    return found


def _type_call(node: Tree) -> tuple[str, list[Tree]] | None:
    """(`map`, [argument]) for a type constructor call such as map(object({...}))."""
    inner = _trees(node)
    call = inner[0] if node.data == "expr_term" and inner else node
    if call.data != "function_call":
        return None
    trees = _trees(call)
    return _name(trees[0]), (_trees(trees[1]) if len(trees) > 1 else [])


def with_type_defaults(type_node: Tree | None, value: Any) -> Any:
    """`value` with the defaults of optional(T, default) attributes filled in, as Terraform does."""
    if type_node is None or value is None:
        return value
    call = _type_call(type_node)
    if call is None:
        return value
    kind, args = call
    if kind in {"map"} and isinstance(value, Mapping):
        return {k: with_type_defaults(args[0], v) for k, v in value.items()}
    if kind in {"list", "set"} and isinstance(value, list):
        return [with_type_defaults(args[0], v) for v in value]
    if kind == "object" and isinstance(value, Mapping):
        (spec,) = _trees(args[0])
        out = dict(value)
        for element in _trees(spec):
            key_node, attr_type = _trees(element)
            key = _name(_trees(_trees(key_node)[0])[0])
            optional = _type_call(attr_type)
            if optional and optional[0] == "optional":
                if key not in out:
                    default = optional[1][1] if len(optional[1]) > 1 else None
                    out[key] = Evaluator({}).eval(default) if default is not None else None
                out[key] = with_type_defaults(optional[1][0], out[key])
            elif key not in out:
                raise TfEvalError(f"attribute {key!r} is required")
            else:
                out[key] = with_type_defaults(attr_type, out[key])
        return out
    return value


def refused(path: Path, inputs: Mapping[str, Any]) -> list[str]:
    """The error message of every validation of `path` that `inputs` fail, in file order.

    Variables left out take their defaults; a condition that cannot be evaluated (an error in
    Terraform, which refuses the plan as well) is reported as `error in <variable>: <why>`.
    """
    variables = read_variables(path)
    unknown = set(inputs) - set(variables)
    if unknown:
        raise TfEvalError(f"no such variable(s): {sorted(unknown)}")
    values = {}
    for name, variable in variables.items():
        if name not in inputs and variable.required:
            raise TfEvalError(f"variable {name} is required")
        value = inputs.get(name, variable.default)
        values[name] = with_type_defaults(variable.type, value)
    failures = []
    for name, variable in variables.items():
        for condition, message in variable.validations:
            try:
                ok = Evaluator({"var": values}).eval(condition)
            except TfEvalError as exc:
                failures.append(f"error in {name}: {exc}")
                continue
            if ok is not True:
                failures.append(message)
    return failures
