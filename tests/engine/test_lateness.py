"""Late and escalated are defined once: whose lateness a deadline is, and how far it has gone up."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from qmsflow.engine import Database, FixedClock, Registry, Runtime, Target, advance, open_case
from qmsflow.engine.caselist import count_cases, list_page
from qmsflow.engine.deadlines import case_deadlines
from qmsflow.engine.lateness import Party, late_timers, responsible_party, timer_keys
from qmsflow.engine.models import Case
from qmsflow.engine.sweep import sweep
from tests.conftest import Province, got, local


def test_whose_lateness_each_shipped_deadline_is(registry: Registry) -> None:
    parties = {
        (d.name, key): responsible_party(d, key) for d in registry.definitions() for key in timer_keys(d)
    }
    # the corrective report waits for the lead's review: that deadline is the lead unit's
    assert parties.pop(("corrective_action", "reported.review_due")) is Party.LEAD
    assert parties and set(parties.values()) == {Party.UNIT}
    assert ("qms_lifecycle", "obligation:yearly_internal_audit") in parties


def _corrective(session, rt: Runtime, province: Province, code: str):
    return open_case(
        session, rt, province.actors["lead"], session.merge(province.units[code]), "corrective_action",
        {"inspection_decision": "20/QĐ-SKHCN", "minutes_number": f"21/BB-{code}", "minutes_signed_on": "2026-01-05",
         "findings": "Chưa họp xem xét của lãnh đạo"},
    )


def _late_ids(db: Database, rt: Runtime, actor) -> set[int]:
    with db.read() as session:
        ids = {row.id for row in list_page(session, rt, actor, {"late": True}, page_size=200).items}
        assert count_cases(session, rt, actor, {"late": "true"}) == len(ids)
        flagged = {row.id for row in list_page(session, rt, actor, page_size=200).items if row.late}
        assert flagged == ids  # the column a page shows and the filter are one definition
        return ids


def test_a_report_awaiting_review_is_the_leads_lateness_not_the_units(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    with db.write() as session:
        waiting = _corrective(session, rt, province, "THCS-MT").id
        correcting = _corrective(session, rt, province, "THPT-TNH").id
    clock.set(local(date(2026, 1, 6)))
    with db.write() as session:
        advance(session, rt, province.actors["thcs"], waiting, "submit_report",
                {"report_number": "3/BC", "reported_on": "2026-01-06", "actions_taken": "Đã họp xem xét"})
    a = province.actors
    clock.set(local(date(2026, 2, 10)))  # the 15 working days of the review have passed; the report is not due
    assert _late_ids(db, rt, a["lead"]) == {waiting}
    assert _late_ids(db, rt, a["mythoi"]) == set()  # the school's supervisor: not its units' lateness
    assert _late_ids(db, rt, a["thcs"]) == set()
    with db.read() as session:
        (timer_id, case_id, unit_id), = session.execute(late_timers(rt.registry, clock.now())).tuples()
        assert (case_id, unit_id) == (waiting, province.units["SKHCN"].id)
        (review,) = case_deadlines(session, rt, a["lead"], got(session, Case, waiting))
        assert review.name == "review_due" and review.late and review.working_days_left < 0
        assert review.counts_against_unit_id == province.units["SKHCN"].id
    clock.set(local(date(2026, 3, 10)))  # the corrective report (2 months from 5 January) is now late too
    assert _late_ids(db, rt, a["lead"]) == {waiting, correcting}
    assert _late_ids(db, rt, a["tnh"]) == {correcting}
    assert _late_ids(db, rt, a["gddt"]) == {correcting}
    assert _late_ids(db, rt, a["mythoi"]) == set()


def _escalated(db: Database, rt: Runtime, actor) -> dict[int, Target | None]:
    with db.read() as session:
        rows = {row.id: row.escalated_to for row in list_page(session, rt, actor, page_size=200).items}
        only = {row.id for row in list_page(session, rt, actor, {"escalated": True}, page_size=200).items}
        assert only == {i for i, t in rows.items() if t in (Target.SUPERVISOR, Target.LEAD, Target.PROVINCIAL_PC)}
        assert count_cases(session, rt, actor, {"escalated": False}) == len(rows) - len(only)
        return rows


@pytest.mark.parametrize("days_after", [0, 1])
def test_escalated_means_the_supervisor_or_above_has_been_told(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, days_after: int
) -> None:
    with db.write() as session:
        case_id = _corrective(session, rt, province, "THPT-TNH").id
        case = session.scalars(select(Case).where(Case.id == case_id)).one()
        (deadline,) = case_deadlines(session, rt, province.actors["lead"], case)
    # the due day (05/03/2026, Thursday) has passed: the unit head is told at once (level 1)
    clock.set(local(date(2026, 3, 6 + days_after)))
    sweep(db, rt, clock.now())
    assert _escalated(db, rt, province.actors["lead"]) == {case_id: Target.UNIT_HEAD}
    # five working days later the Sở GD&ĐT, the school's supervisor, is told (level 2): escalated
    clock.set(local(date(2026, 3, 13 + days_after)))
    sweep(db, rt, clock.now())
    assert _escalated(db, rt, province.actors["gddt"]) == {case_id: Target.SUPERVISOR}
    assert deadline.due_date == date(2026, 3, 5)
