"""The guard and gateway condition language: what it evaluates, and everything it refuses to parse."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qmsflow.engine.conditions import Condition, parse_condition
from qmsflow.engine.errors import ConditionError


def holds(source: str, **data: Any) -> bool:
    return parse_condition(source).evaluate(data)


# -------------------------------------------------------------------------------------- evaluating


def test_comparisons_read_fields_under_data() -> None:
    assert holds("data.findings > 0", findings=3)
    assert not holds("data.findings > 0", findings=0)
    assert holds("data.findings >= 3 and data.findings <= 3", findings=3)
    assert holds("data.decision == 'accepted'", decision="accepted")
    assert holds("data.decision != 'accepted'", decision="not_accepted")


def test_and_or_not_combine_conditions() -> None:
    source = "data.a == 1 and (data.b == 2 or not data.c)"
    assert holds(source, a=1, b=2, c=True)
    assert holds(source, a=1, b=0, c=False)
    assert not holds(source, a=1, b=0, c=True)
    assert not holds(source, a=0, b=2, c=False)


def test_true_false_and_null_are_the_literal_names() -> None:
    assert holds("data.scope_changed == true", scope_changed=True)
    assert holds("data.overdue == false", overdue=False)
    assert holds("data.effective_confirmed_on == null", effective_confirmed_on=None)


def test_membership_in_a_literal_list() -> None:
    assert holds("data.decision in ['accepted', 'accepted_with_notes']", decision="accepted")
    assert not holds("data.decision in ['accepted', 'accepted_with_notes']", decision="not_accepted")
    assert holds("data.decision not in ['accepted']", decision="not_accepted")
    assert holds("data.count in [1, 2, 3]", count=2)


def test_a_missing_field_reads_as_null() -> None:
    assert holds("data.committee_decision_number == null")
    assert not holds("data.committee_decision_number != null")


def test_ordering_against_a_missing_field_is_unknown_and_so_is_its_negation() -> None:
    # Regression: "not (data.n > 0)" held while "data.n <= 0" did not, with n missing.
    assert not holds("data.procedure_count > 0")
    assert not holds("data.procedure_count <= 0")
    assert not holds("data.procedure_count > 0", procedure_count=None)
    assert not holds("not (data.procedure_count > 0)")
    assert parse_condition("not (data.procedure_count > 0)").outcome({}) == (None, ("procedure_count",))


def test_ordering_mixed_types_in_the_data_is_false_not_an_error() -> None:
    assert not holds("data.count > 0", count="many")


def test_in_takes_a_list_literal_so_text_is_never_matched_as_a_substring() -> None:
    # Regression: "'ccep' in data.decision" held for decision "accepted".
    with pytest.raises(ConditionError, match="list literal on its right"):
        parse_condition("'ccep' in data.decision")
    with pytest.raises(ConditionError, match="list literal on its right"):
        parse_condition("data.count in 5")
    assert not holds("data.decision in ['ccep']", decision="accepted")


def test_chained_comparisons_hold_only_when_every_link_holds() -> None:
    assert holds("0 < data.n < 10", n=5)
    assert not holds("0 < data.n < 10", n=10)


def test_unary_minus_on_integers() -> None:
    assert holds("data.delta == -1", delta=-1)


def test_nested_fields_read_through_mappings_and_are_null_otherwise() -> None:
    assert holds("data.unit.code == 'SKHCN'", unit={"code": "SKHCN"})
    assert holds("data.unit.code == null", unit="SKHCN")


def test_a_condition_reports_the_top_level_fields_it_reads() -> None:
    condition = parse_condition("data.a == 1 and data.b.c > 0 or data.d in ['x']")
    assert condition.fields() == {"a", "b", "d"}


def test_the_source_is_kept_verbatim_without_surrounding_space() -> None:
    assert parse_condition("  data.a == 1 \n").source == "data.a == 1"


# --------------------------------------------------------------------------------------- refusing


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        pytest.param("__import__('os').system('x')", "function calls", id="call"),
        pytest.param("len(data.findings) > 0", "function calls", id="builtin-call"),
        pytest.param("data.__class__", "may not start with '_'", id="attribute-dunder"),
        pytest.param("data.findings.__class__ == 1", "may not start with '_'", id="nested-dunder"),
        pytest.param("data._private == 1", "may not start with '_'", id="private-field"),
        pytest.param("data['findings'] > 0", "Subscript", id="subscript"),
        pytest.param("(lambda: 1) == 1", "Lambda", id="lambda"),
        pytest.param("[x for x in [1, 2]] == [1, 2]", "ListComp", id="list-comprehension"),
        pytest.param("any(x for x in [1])", "function calls", id="generator-in-call"),
        pytest.param("os == 1", "unknown name 'os'", id="unknown-name"),
        pytest.param("data == 1", "unknown name 'data'", id="bare-data"),
        pytest.param("case.findings > 0", "fields are read as data.<name>", id="other-root"),
        pytest.param("data.score > 1.5", "literal 1.5", id="float"),
        pytest.param("data.score > 1e3", "literal 1000.0", id="float-exponent"),
        pytest.param("(data.x := 1)", "syntax error", id="walrus-on-attribute"),
        pytest.param("(x := 1) == 1", "NamedExpr", id="walrus"),
        pytest.param("f'{data.x}' == 'a'", "JoinedStr", id="f-string"),
        pytest.param("data.x is None", "operator Is", id="is"),
        pytest.param("data.x + 1 > 0", "BinOp", id="arithmetic"),
        pytest.param("1 if data.x else 0", "IfExp", id="conditional-expression"),
        pytest.param("data.x in {1, 2}", "Set", id="set-literal"),
        pytest.param("data.x in [data.y]", "literals only", id="field-in-list"),
        pytest.param("data.x == b'a'", "literal b'a'", id="bytes"),
        pytest.param("'abc'.upper == 1", "only fields can be read", id="attribute-of-literal"),
        pytest.param("(data.x == 1).real == 1", "only fields can be read", id="attribute-of-expression"),
        pytest.param("data.x == 1; data.y == 2", "syntax error", id="two-statements"),
        pytest.param("import os", "syntax error", id="import"),
        pytest.param("", "non-empty", id="empty"),
        pytest.param("   ", "non-empty", id="blank"),
    ],
)
def test_a_construct_outside_the_language_is_refused(source: str, reason: str) -> None:
    with pytest.raises(ConditionError) as caught:
        parse_condition(source)
    assert reason in caught.value.reason
    assert caught.value.expression == source


def test_a_literal_attribute_can_no_longer_smuggle_a_null_into_a_comparison() -> None:
    # Regression: "(1).real" passed the check and evaluated to null, so "data.x == (1).real" held.
    with pytest.raises(ConditionError):
        parse_condition("data.x == (1).real")


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("not " * 2000 + "true", id="not-chain"),
        pytest.param("-" * 100_000 + "1", id="minus-chain"),
        pytest.param("data" + ".a" * 3000 + " == 1", id="attribute-chain"),
        pytest.param("(" * 300 + "1" + ")" * 300, id="parentheses"),
    ],
)
def test_very_deep_nesting_is_refused_rather_than_exhausting_the_stack(source: str) -> None:
    # Regression: these raised RecursionError or MemoryError out of the parser and the checker.
    with pytest.raises(ConditionError):
        parse_condition(source)


def test_a_non_string_is_refused() -> None:
    with pytest.raises(ConditionError):
        parse_condition(42)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------- properties

# Text built from the language's own pieces reaches the checker far more often than random text.
PIECES = "data . a b _ __class__ ( ) [ ] { } , : 'x' \"y\" 1 0 1.5 - + * == != < >= := f' \\ # true null None lambda"
tokens = st.sampled_from([*PIECES.split(), " in ", " not ", " and ", " or ", " is ", " for ", " if ", " else ", "\n", "\x00"])
condition_like = st.lists(tokens, max_size=25).map("".join)


@settings(max_examples=500, deadline=None)
@given(source=st.one_of(st.text(max_size=80), condition_like))
@example("data.a == 1")
@example("\x00")
@example("1" * 5000)
def test_any_text_parses_into_a_condition_or_is_refused_with_a_condition_error(source: str) -> None:
    try:
        condition = parse_condition(source)
    except ConditionError:
        return
    assert isinstance(condition, Condition)
    assert isinstance(condition.evaluate({}), bool)
    assert isinstance(condition.evaluate({"a": 1, "b": {"a": "x"}}), bool)
