"""Conditions against tables: the shipped guards keep today's answers; three-valued logic on stored data."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from qmsflow.engine import Database, FixedClock, GuardFailed, Registry, Runtime, advance, open_case
from qmsflow.engine.conditions import Condition, parse_condition
from qmsflow.engine.models import Case
from tests.conftest import Province, local

ANSWERS = Path(__file__).parents[1] / "fixtures" / "shipped_condition_answers.json"


def _shipped_conditions(registry: Registry) -> dict[tuple[str, str], list[Condition]]:
    out: dict[tuple[str, str], list[Condition]] = {}
    for name in ("qms_lifecycle", "corrective_action"):
        definition = registry.machine(name, 1).definition
        for event, guard in definition.guards.items():
            out[(name, f"events.{event}.guard")] = [guard]
        for transition in definition.transitions:
            if transition.when is not None:
                conditions = out.setdefault((name, f"events.{transition.event}.branches"), [])
                if transition.when.source not in [c.source for c in conditions]:
                    conditions.append(transition.when)
    return out


def test_every_shipped_guard_and_branch_gives_the_answer_it_gave_before_three_valued_logic(registry: Registry) -> None:
    # The table was computed with the two-valued evaluator (commit 6013d7d) over every combination of
    # missing and present values of the fields each condition reads.
    rows = json.loads(ANSWERS.read_text(encoding="utf-8"))["rows"]
    conditions = _shipped_conditions(registry)
    assert {(r["workflow"], r["where"]) for r in rows} == set(conditions)  # none left out of the table
    assert all(len(c) == 1 for c in conditions.values())
    changed = [r for r in rows if conditions[(r["workflow"], r["where"])][0].evaluate(r["data"]) != r["holds"]]
    assert changed == []
    assert len(rows) == 105 and sum(r["holds"] for r in rows) > 0


# (condition, data, three-valued result, missing fields named)
THREE_VALUED: list[tuple[str, dict[str, Any], bool | None, tuple[str, ...]]] = [
    ("data.a < data.b", {}, None, ("a", "b")),
    ("data.a < data.b", {"a": "2026-01-01", "b": "2026-02-01"}, True, ()),
    ("not (data.a >= data.b)", {"b": "2026-01-01"}, None, ("a",)),
    ("not (data.a < data.b)", {"a": "2026-01-01", "b": "2026-02-01"}, False, ()),
    ("data.a == null", {}, True, ()),
    ("data.a == null", {"a": None}, True, ()),
    ("null == data.a", {}, True, ()),
    ("data.a != null", {}, False, ()),
    ("data.a != null", {"a": 0}, True, ()),
    ("data.a != null", {"a": False}, True, ()),
    ("not (data.a == null)", {}, False, ()),
    ("data.n > 0 and data.a == null", {}, None, ("n",)),
    ("data.n > 0 and data.a != null", {}, False, ()),
    ("data.n > 0 or data.a == null", {}, True, ()),
    ("data.n > 0 or data.a != null", {}, None, ("n",)),
    ("data.n > 0 or data.m > 0", {}, None, ("m", "n")),
    ("data.n > 0 or data.m > 0", {"m": 1}, True, ()),
    ("data.n > 0 and data.m > 0", {"m": 0}, False, ()),
    ("not (data.n > 0 and data.m > 0)", {"n": 0}, True, ()),
    ("not (data.n > 0 or data.m > 0)", {"n": 0}, None, ("m",)),
    ("data.n == 0", {"n": 0}, True, ()),
    ("data.n == -1", {"n": -1}, True, ()),
    ("0 < data.n < 10", {"n": 5}, True, ()),
    ("0 < data.n < 10", {"n": 10}, False, ()),
    ("0 < data.n < 10", {}, None, ("n",)),
    ("data.flag", {}, None, ("flag",)),
    ("not data.flag", {}, None, ("flag",)),
    ("not data.flag", {"flag": False}, True, ()),
    ("data.flag == false", {"flag": False}, True, ()),
    ("data.d in ['accepted', 'accepted_with_notes']", {}, None, ("d",)),
    ("data.d not in ['accepted']", {}, None, ("d",)),
    ("data.d in ['accepted']", {"d": "accepted"}, True, ()),
    ("data.d in ['ccep']", {"d": "accepted"}, False, ()),
    ("data.u.code == 'X'", {"u": {"code": "X"}}, True, ()),
    ("data.u.code == 'X'", {"u": {}}, None, ("u.code",)),
    ("data.u.code == null", {"u": "X"}, True, ()),
    ("data.a >= data.b", {"a": "2026-03-01", "b": None}, None, ("b",)),
]


def test_the_three_valued_table_holds_on_data_stored_in_a_case_row(
    db: Database, rt: Runtime, province: Province
) -> None:
    # Each row's data goes into a case row and is read back from the backend before it is evaluated.
    with db.write() as session:
        cid = open_case(session, rt, province.actors["lead"], province.units["SNV"], "qms_lifecycle").id
    wrong = []
    for source, data, result, missing in THREE_VALUED:
        with db.write() as session:
            session.execute(update(Case).where(Case.id == cid).values(data=data))
        with db.read() as session:
            case = session.get(Case, cid)
            assert case is not None
            stored = case.data
        condition = parse_condition(source)
        got = condition.outcome(stored)
        if got != (result, missing) or condition.evaluate(stored) is not (result is True):
            wrong.append((source, data, stored, got))
    assert wrong == []


def test_a_guard_left_unknown_fails_naming_the_missing_field(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    with db.write() as session:
        cid = open_case(session, rt, province.actors["lead"], province.units["SNV"], "qms_lifecycle").id
    clock.set(local(date(2026, 1, 7)))
    with db.write() as session:
        advance(session, rt, province.actors["snv"], cid, "approve_plan", {"plan_number": "1/KH", "plan_approved_on": "2026-01-05"})
        case = session.get(Case, cid)
        assert case is not None and case.state == "building"
        session.execute(update(Case).where(Case.id == cid).values(
            data={**case.data, "committee_decision_number": "2/QĐ", "documents_issued_on": "2026-01-07"}))
    with db.write() as session, pytest.raises(GuardFailed) as caught:
        advance(session, rt, province.actors["snv"], cid, "start_applying")
    problems = [(p.field, p.message) for p in caught.value.problems]
    assert problems[0][0] == "guard"
    assert problems[1:] == [("procedure_count", "missing: the guard cannot be decided without it")]
