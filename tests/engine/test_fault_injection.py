"""Fault injection: make each write statement fail in turn, and prove nothing is left half done.

For ``advance``: whichever write fails, no row remains and every loaded object equals its row, even
for a caller that catches the error and commits. For the sweep: each case is all or nothing, no
step fires twice, and the history verifies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import pytest
from sqlalchemy import event, func, select

from qmsflow.engine import Database, FixedClock, Runtime, advance, open_case
from qmsflow.engine.history import verify_all
from qmsflow.engine.models import Case, HistoryEntry, Timer, TimerFiring
from qmsflow.engine.sweep import sweep
from tests.conftest import (
    HISTORY_KEY,
    Province,
    allow_another_open_case,
    assert_loaded_objects_match_their_rows,
    local,
    rows_committed,
    rows_through,
)

WRITES = ("INSERT", "UPDATE", "DELETE")


class InjectedFault(Exception):
    """The failure a test makes a statement raise."""


@contextmanager
def failing_write(db: Database, at: int) -> Iterator[list[str]]:
    """Make the ``at``-th write statement (1-based) from now raise InjectedFault; yield the writes seen."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith(WRITES):
            seen.append(statement.split(None, 3)[:3][-1] if statement.upper().startswith("INSERT") else statement.split()[1])
            if len(seen) == at:
                raise InjectedFault(f"write {at}: {statement[:60]}")

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", before)


NOTICE = {"notice_number": "6/TB", "notice_sent_on": "2026-01-05", "posted_on_website": True}
STEPS = [
    ("approve_plan", {"plan_number": "12/KH", "plan_approved_on": "2026-01-05"}),
    ("establish_committee", {"committee_decision_number": "30/QĐ", "committee_decided_on": "2026-01-05"}),
    ("issue_documents", {"documents_decision_number": "31/QĐ", "documents_issued_on": "2026-01-05", "procedure_count": 12}),
    ("start_applying", {}),
    ("record_internal_audit", {"internal_audit_on": "2026-01-05", "internal_audit_report": "1/BC", "nonconformities_open": 0}),
    ("record_management_review", {"management_review_on": "2026-01-05", "management_review_minutes": "2/BB"}),
    ("confirm_effective", {"effective_confirmed_on": "2026-01-05"}),
    ("announce", {"announcement_number": "5/QĐ", "announced_on": "2026-01-05"}),
]


def test_whichever_write_of_a_transition_fails_nothing_of_it_remains(db: Database, rt: Runtime, province: Province) -> None:
    # notify_lead is the richest step: the case and its history, the announced state's timer
    # cancelled, and two obligations opened with their timers and history rows
    with db.write() as session:
        case_id = open_case(session, rt, province.actors["lead"], province.units["THPT-TNH"], "qms_lifecycle").id
        for event_name, data in STEPS:
            advance(session, rt, province.actors["tnh"], case_id, event_name, data)
    before = rows_committed(db)
    at = 0
    while True:
        at += 1
        with db.write() as session:
            case = session.get(Case, case_id)
            assert case is not None and case.state == "announced"
            with failing_write(db, at) as seen:
                try:
                    advance(session, rt, province.actors["tnh"], case_id, "notify_lead", NOTICE)
                except InjectedFault:
                    pass
                else:
                    assert at > 1, "the transition should write something"
                    break
            assert rows_through(session) == before, f"write {at} ({seen[-1]}) left rows behind"
            assert (case.state, case.version) == ("announced", 9)
            assert_loaded_objects_match_their_rows(session)
        assert rows_committed(db) == before  # this caller even committed after catching the error
    assert at - 1 >= 7, f"only {at - 1} writes were tried: {seen}"
    with db.read() as session:
        assert session.get(Case, case_id).state == "maintaining"  # type: ignore[union-attr]
        assert verify_all(session, HISTORY_KEY)[2] == []


MINUTES = {"inspection_decision": "88/QĐ", "findings": "Chưa cập nhật quy trình", "minutes_signed_on": "2025-10-01"}


def _open_round(db: Database, rt: Runtime, clock: FixedClock, province: Province, round_: int) -> list[int]:
    """Two lifecycles that only record and notify, one corrective action whose due step runs a transition."""
    clock.set(local(date(2025, 10, 2)))
    with db.write() as session:
        ids = []
        for code in ("THPT-TNH", "SNV"):
            allow_another_open_case(session, province.units[code])
            ids.append(open_case(session, rt, province.actors["lead"], province.units[code], "qms_lifecycle").id)
        ids.append(
            open_case(
                session, rt, province.actors["lead"], province.units["THCS-MT"], "corrective_action",
                MINUTES | {"minutes_number": f"{round_}/BB"},
            ).id
        )
    return ids


def _per_case(db: Database, ids: list[int]) -> dict[int, tuple[int, int, str]]:
    """(history rows, firings, state) of each case."""
    with db.read() as session:
        out = {}
        for case_id in ids:
            rows = session.scalar(select(func.count()).select_from(HistoryEntry).where(HistoryEntry.case_id == case_id))
            firings = session.scalar(
                select(func.count()).select_from(TimerFiring).where(TimerFiring.timer_id.in_(select(Timer.id).where(Timer.case_id == case_id)))
            )
            case = session.get(Case, case_id)
            assert case is not None and rows is not None and firings is not None
            out[case_id] = (rows, firings, case.state)
        return out


def test_whichever_write_of_a_sweep_fails_each_case_is_all_or_nothing_and_fires_once(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    now = local(date(2026, 3, 1))
    reference = _open_round(db, rt, clock, province, 0)
    opened = _per_case(db, reference)
    sweep(db, rt, now)
    done = _per_case(db, reference)  # what a clean sweep makes of each kind of case
    assert all(done[i] != opened[i] for i in reference)
    at = 0
    while True:
        at += 1
        ids = _open_round(db, rt, clock, province, at)
        with failing_write(db, at) as seen:
            sweep(db, rt, now)
        if len(seen) < at:  # no fault was reached: every write of the sweep has been tried
            break
        after = _per_case(db, ids)
        for like, case_id in zip(reference, ids, strict=True):
            assert after[case_id] in ((opened[like][0], 0, opened[like][2]), done[like]), (
                f"write {at} ({seen[at - 1]}) left case {case_id} half done: {after[case_id]}"
            )
        sweep(db, rt, now)  # the next sweep finishes what the failed one left
        assert _per_case(db, ids) == {case_id: done[like] for like, case_id in zip(reference, ids, strict=True)}
    assert at - 1 >= 5, f"only {at - 1} writes were tried"
    with db.read() as session:
        assert verify_all(session, HISTORY_KEY)[2] == []
        duplicated = session.execute(
            select(TimerFiring.timer_id, TimerFiring.step).group_by(TimerFiring.timer_id, TimerFiring.step).having(func.count() > 1)
        ).all()
        assert duplicated == []


@pytest.fixture(autouse=True)
def _quiet_sweep_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("CRITICAL", logger="qmsflow.engine.sweep")
