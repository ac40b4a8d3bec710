"""A small declarative condition language for guards and exclusive gateways.

Conditions are written as expressions such as ``data.findings > 0 and data.scope_changed == true``.
They are parsed once, at definition load, into a tree of allowed nodes only: field references under
``data``, literals, comparisons, ``and``/``or``/``not`` and membership in a literal list. Nothing is
ever handed to ``eval``; a call, a subscript, an import or a dunder is rejected with a ConditionError.
The source text is kept verbatim so a BPMN ``conditionExpression`` can carry it unchanged.

A missing field (absent, or null) has a defined meaning: three-valued (Kleene) logic. A comparison
with a missing operand is unknown; ``not`` unknown is unknown; ``and`` is false if any side is false,
else unknown if any side is unknown; ``or`` is true if any side is true, else unknown if any is.
``== null`` and ``!= null`` are the tests of missingness and are always known. A condition that ends
unknown does not hold, and ``outcome`` names the missing fields that left it undecided. ``in`` takes
a list literal on its right (never a field: no substring matching).
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

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


class Outcome(NamedTuple):
    """A condition's three-valued result (None: unknown) and the missing fields that made it unknown."""

    result: bool | None
    missing: tuple[str, ...]

    @property
    def holds(self) -> bool:
        """Whether the condition holds: unknown does not."""
        return self.result is True


class _Unknown:
    """The third truth value, carrying the dotted names of the missing fields behind it."""

    __slots__ = ("missing",)

    def __init__(self, missing: frozenset[str]) -> None:
        self.missing = missing


_Truth = bool | _Unknown

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
        """Return whether the condition holds for ``data``; unknown (a missing operand) does not hold."""
        return _truth(self.tree.body, data) is True

    def outcome(self, data: Mapping[str, Any]) -> Outcome:
        """Return the three-valued result for ``data`` and, when unknown, the missing fields behind it."""
        result = _truth(self.tree.body, data)
        if isinstance(result, _Unknown):
            return Outcome(None, tuple(sorted(result.missing)))
        return Outcome(result, ())

    def comparisons(self) -> Iterator[tuple[str, ast.cmpop, ast.AST]]:
        """Yield (field, operator, other operand) once for each comparison link with a top-level field in it."""
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
                    if _top_field(left) is not None:
                        yield str(_top_field(left)), op, right
                    elif _top_field(right) is not None and not isinstance(op, (ast.In, ast.NotIn)):
                        yield str(_top_field(right)), op, left

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
        operands = [node.left, *node.comparators]
        for op, right in zip(node.ops, node.comparators, strict=True):
            if type(op) not in _COMPARE:
                raise ConditionError(source, f"operator {type(op).__name__} is not allowed")
            if isinstance(op, (ast.In, ast.NotIn)) and not isinstance(right, (ast.List, ast.Tuple)):
                _check(right, source)  # a refused construct is named as such first
                raise ConditionError(source, "'in' takes a list literal on its right, e.g. data.x in ['a', 'b']")
        for i, operand in enumerate(operands):
            after_in = i > 0 and isinstance(node.ops[i - 1], (ast.In, ast.NotIn))
            if after_in and isinstance(operand, (ast.List, ast.Tuple)):
                _check_list(operand, source)
            else:
                _check(operand, source)
        for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
            if (_is_null(left) or _is_null(right)) and not isinstance(op, (ast.Eq, ast.NotEq)):
                raise ConditionError(source, "null is tested with '== null' or '!= null' only")
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
        raise ConditionError(source, "a list literal may only stand on the right of 'in'")
    elif isinstance(node, ast.Call):
        raise ConditionError(source, "function calls are not allowed")
    else:
        raise ConditionError(source, f"{type(node).__name__} is not allowed in a condition")


def literal_values(node: ast.AST) -> list[Any]:
    """Return the non-null literal values ``node`` stands for (a list gives each element); [] otherwise."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return [v for e in node.elts for v in literal_values(e)]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = literal_values(node.operand)
        return [-v for v in inner if isinstance(v, int) and not isinstance(v, bool)] or inner
    if isinstance(node, ast.Constant) and node.value is not None:
        return [node.value]
    if isinstance(node, ast.Name) and _LITERAL_NAMES.get(node.id) is not None:
        return [_LITERAL_NAMES[node.id]]
    return []


def _check_list(node: ast.List | ast.Tuple, source: str) -> None:
    for element in node.elts:
        if not isinstance(element, ast.Constant) and not (
            isinstance(element, ast.Name) and element.id in _LITERAL_NAMES
        ):
            raise ConditionError(source, "a list may hold literals only")
        _check(element, source)


def _is_null(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and _LITERAL_NAMES.get(node.id, 0) is None) or (
        isinstance(node, ast.Constant) and node.value is None
    )


def _top_field(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.attr
    return None


def _path(node: ast.AST) -> str:
    """The dotted name of a field reference, without ``data.``."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join(reversed(parts))


def _kleene_and(values: list[_Truth]) -> _Truth:
    if any(v is False for v in values):
        return False
    unknown = [v for v in values if isinstance(v, _Unknown)]
    return _Unknown(frozenset().union(*(u.missing for u in unknown))) if unknown else True


def _kleene_or(values: list[_Truth]) -> _Truth:
    if any(v is True for v in values):
        return True
    unknown = [v for v in values if isinstance(v, _Unknown)]
    return _Unknown(frozenset().union(*(u.missing for u in unknown))) if unknown else False


def _truth(node: ast.AST, data: Mapping[str, Any]) -> _Truth:
    """Return the three-valued truth of ``node``: every operand is evaluated, none short-circuits."""
    if isinstance(node, ast.BoolOp):
        values = [_truth(v, data) for v in node.values]
        return _kleene_and(values) if isinstance(node.op, ast.And) else _kleene_or(values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        operand = _truth(node.operand, data)
        return operand if isinstance(operand, _Unknown) else not operand
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        links: list[_Truth] = []
        for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
            links.append(_compare(op, left, right, data))
        return _kleene_and(links)
    value = _eval(node, data)
    if value is None:
        return _Unknown(frozenset({_path(node)}) if isinstance(node, ast.Attribute) else frozenset())
    return bool(value)


def _compare(op: ast.cmpop, left: ast.AST, right: ast.AST, data: Mapping[str, Any]) -> _Truth:
    a, b = _eval(left, data), _eval(right, data)
    if _is_null(left) or _is_null(right):
        # the test of missingness (_check allows only == and != with null): always known
        return (a is None and b is None) == isinstance(op, ast.Eq)
    missing = [_path(n) for n, v in ((left, a), (right, b)) if v is None and isinstance(n, ast.Attribute)]
    if missing or a is None or b is None:
        return _Unknown(frozenset(missing))
    try:
        return bool(_COMPARE[type(op)](a, b))
    except TypeError:
        # Known values of types that do not order (a field holding text where a number is compared):
        # false, as before; the loader refuses such literals, so only mismatched data reaches here.
        return False


def _eval(node: ast.AST, data: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        operand = _eval(node.operand, data)
        return -operand if isinstance(operand, int) else None
    # Each node is evaluated once: _truth and _eval call each other on children only, never on the
    # same node twice, so 100 nested levels (the most _check lets through) cost 100 steps, not 2**100.
    if isinstance(node, (ast.BoolOp, ast.Compare, ast.UnaryOp)):
        truth = _truth(node, data)
        return None if isinstance(truth, _Unknown) else truth
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


__all__ = ["Condition", "Outcome", "literal_values", "parse_condition"]
