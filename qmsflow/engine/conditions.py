"""A small declarative condition language for guards and exclusive gateways.

Conditions are written as expressions such as ``data.findings > 0 and data.scope_changed == true``.
They are parsed once, at definition load, into a tree of allowed nodes only: field references under
``data``, literals, comparisons, ``and``/``or``/``not`` and membership in a literal list. Nothing is
ever handed to ``eval``; a call, a subscript, an import or a dunder is rejected with a ConditionError.
The source text is kept verbatim so a BPMN ``conditionExpression`` can carry it unchanged.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConditionError

_LITERAL_NAMES: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "True": True,
    "False": False,
    "None": None,
}

_MAX_DEPTH = 100

_COMPARE = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


@dataclass(frozen=True)
class Condition:
    """A parsed condition: its source text and the checked syntax tree."""

    source: str
    tree: ast.Expression

    def evaluate(self, data: Mapping[str, Any]) -> bool:
        """Return whether the condition holds for ``data``; a missing field reads as null."""
        return bool(_eval(self.tree.body, data))

    def fields(self) -> set[str]:
        """Return the top-level data fields the condition reads."""
        out: set[str] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                out.add(node.attr)
        return out


def parse_condition(source: str) -> Condition:
    """Parse and check ``source``; raise ConditionError if it leaves the allowed language."""
    if not isinstance(source, str) or not source.strip():
        raise ConditionError(str(source), "a condition must be a non-empty string")
    try:
        with warnings.catch_warnings():
            # odd escapes in a string literal warn at parse time; the text is checked below, not run
            warnings.simplefilter("ignore")
            tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(source, f"syntax error at column {exc.offset}") from None
    except (RecursionError, MemoryError):
        # CPython's parser gives up on very deep nesting with these, not with a SyntaxError.
        raise ConditionError(source, "nested too deeply") from None
    if _depth(tree) > _MAX_DEPTH:
        # checked before _check and evaluate recurse, so neither can exhaust the stack
        raise ConditionError(source, f"nested more than {_MAX_DEPTH} levels deep")
    _check(tree.body, source)
    return Condition(source=source.strip(), tree=tree)


def _depth(tree: ast.AST) -> int:
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _check(node: ast.AST, source: str) -> None:
    if isinstance(node, ast.BoolOp):
        if not isinstance(node.op, (ast.And, ast.Or)):
            raise ConditionError(source, "only 'and' and 'or' may join conditions")
        for value in node.values:
            _check(value, source)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.Not, ast.USub)):
            raise ConditionError(source, "only 'not' and unary minus are allowed")
        _check(node.operand, source)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise ConditionError(source, f"operator {type(op).__name__} is not allowed")
        _check(node.left, source)
        for comparator in node.comparators:
            _check(comparator, source)
    elif isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            raise ConditionError(source, f"field name {node.attr!r} may not start with '_'")
        if isinstance(node.value, ast.Name):
            if node.value.id != "data":
                raise ConditionError(source, f"fields are read as data.<name>, not {node.value.id}.<name>")
        elif isinstance(node.value, ast.Attribute):
            _check(node.value, source)
        else:
            raise ConditionError(source, "only fields can be read: data.<name>, data.<name>.<name>")
    elif isinstance(node, ast.Name):
        if node.id not in _LITERAL_NAMES:
            raise ConditionError(
                source, f"unknown name {node.id!r}: use data.<field>, true, false or null"
            )
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, (str, int, bool)) and node.value is not None:
            raise ConditionError(source, f"literal {node.value!r} is not allowed")
    elif isinstance(node, (ast.List, ast.Tuple)):
        for element in node.elts:
            if not isinstance(element, ast.Constant) and not (
                isinstance(element, ast.Name) and element.id in _LITERAL_NAMES
            ):
                raise ConditionError(source, "a list may hold literals only")
            _check(element, source)
    elif isinstance(node, ast.Call):
        raise ConditionError(source, "function calls are not allowed")
    else:
        raise ConditionError(source, f"{type(node).__name__} is not allowed in a condition")


def _eval(node: ast.AST, data: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, data) for v in node.values)
        return any(_eval(v, data) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, data)
        if isinstance(node.op, ast.Not):
            return not operand
        return -operand if isinstance(operand, int) else None
    if isinstance(node, ast.Compare):
        left = _eval(node.left, data)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, data)
            try:
                ok = _COMPARE[type(op)](left, right)
            except TypeError:
                # null or mixed types never satisfy an ordering: a missing date is "not yet".
                return False
            if not ok:
                return False
            left = right
        return True
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name):
            return data.get(node.attr)
        parent = _eval(node.value, data)
        return parent.get(node.attr) if isinstance(parent, Mapping) else None
    if isinstance(node, ast.Name):
        return _LITERAL_NAMES[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, data) for e in node.elts]
    raise AssertionError(f"unchecked node {type(node).__name__}")  # _check rejected everything else


__all__ = ["Condition", "parse_condition"]
