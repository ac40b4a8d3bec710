"""A comment is recorded in the signed history row; every field problem carries a code a page can translate."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from qmsflow.engine import Database, FixedClock, GuardFailed, Runtime, advance, open_case
from qmsflow.engine.cases import MAX_COMMENT
from qmsflow.engine.definitions import FieldSpec, Label
from qmsflow.engine.fields import clean_fields
from qmsflow.engine.history import verify_all
from qmsflow.engine.models import HistoryEntry
from qmsflow.engine.timeline import case_timeline
from tests.conftest import HISTORY_KEY, Province, got

L = Label(vi="nhãn", en="label")


def test_a_comment_is_in_the_history_row_the_chain_signs_and_on_the_timeline(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    with db.write() as session:
        case = open_case(session, rt, province.actors["lead"], session.merge(province.units["THPT-TNH"]), "qms_lifecycle")
        advance(session, rt, province.actors["tnh"], case.id, "approve_plan", {"plan_number": "1/KH", "plan_approved_on": "2026-01-05"},
                comment="  <script>alert(1)</script> đã trình lãnh đạo  ")
        case_id = case.id
    with db.read() as session:
        entry = case_timeline(session, rt, province.actors["tnh"], case_id)[-1]
        assert entry.comment == "<script>alert(1)</script> đã trình lãnh đạo"
        assert "_comment" not in entry.details and "_comment" not in got(session, type(case), case_id).data
        assert verify_all(session, HISTORY_KEY)[2] == []


def test_a_comment_too_long_is_refused_with_the_fields_and_nothing_is_written(
    db: Database, rt: Runtime, province: Province
) -> None:
    with db.write() as session:
        case = open_case(session, rt, province.actors["lead"], session.merge(province.units["THPT-TNH"]), "qms_lifecycle")
        before = session.scalar(select(func.count(HistoryEntry.id)))
        with pytest.raises(GuardFailed) as refused:
            advance(session, rt, province.actors["tnh"], case.id, "approve_plan", {"plan_number": "1/KH"},
                    comment="x" * (MAX_COMMENT + 1))
        assert {(p.field, p.code) for p in refused.value.problems} == {("comment", "max_length"), ("plan_approved_on", "required")}
        assert session.scalar(select(func.count(HistoryEntry.id))) == before


@pytest.mark.parametrize(
    ("spec", "value", "code", "params"),
    [
        (FieldSpec(type="date", label=L, not_in_future=True), "2026-06-02", "not_in_future", {"today": "2026-06-01"}),
        (FieldSpec(type="date", label=L), "2026-02-30", "not_a_real_date", {}),
        (FieldSpec(type="date", label=L), "02/03/2026", "not_a_date", {}),
        (FieldSpec(type="string", label=L, max_length=3), "abcd", "max_length", {"n": 3}),
        (FieldSpec(type="integer", label=L), "-1", "negative", {}),
        (FieldSpec(type="integer", label=L), "x", "not_a_whole_number", {}),
        (FieldSpec(type="boolean", label=L), "maybe", "not_a_boolean", {}),
        (FieldSpec(type="choice", label=L, choices=["a", "b"]), "c", "not_a_choice", {"choices": ["a", "b"]}),
        (FieldSpec(type="string", label=L, required=True), " ", "required", {}),
    ],
)
def test_every_field_problem_has_a_code_and_its_values(spec: FieldSpec, value: object, code: str, params: dict[str, object]) -> None:
    _, problems = clean_fields({"f": spec}, {"f": value}, date(2026, 6, 1))
    assert [(p.field, p.code, p.params) for p in problems] == [("f", code, params)]
