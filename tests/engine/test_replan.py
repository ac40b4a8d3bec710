"""A changed calendar override re-plans the pending deadlines it affects, and says so in the history."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from qmsflow.engine import CalendarOverrides, Database, Runtime, WorkingCalendar, open_case
from qmsflow.engine.cases import pending_timers
from qmsflow.engine.models import Case, HistoryEntry, Timer
from qmsflow.engine.replanning import apply_calendar
from tests.conftest import Province


def test_an_extra_day_off_moves_the_deadlines_that_span_it(db: Database, rt: Runtime, province: Province) -> None:
    with db.write() as session:
        apply_calendar(session, rt)  # record the fingerprint the first timers are planned with
        case = open_case(session, rt, province.actors["lead"], province.units["SNV"], "qms_lifecycle")
        (timer,) = pending_timers(session, case)
        before = timer.due_date  # 30 working days from Mon 5 Jan 2026, across Tết
        timer_id, case_id = timer.id, case.id
    assert before == date(2026, 2, 23)

    extra = CalendarOverrides.from_mapping(
        {2026: {"days_off": [{"date": "2026-01-23", "name": "Nghỉ đột xuất"}], "working_days": ["2026-08-22"]}}
    )
    changed = Runtime(registry=rt.registry, calendar=WorkingCalendar(extra), clock=rt.clock, history_key=rt.history_key)
    with db.write() as session:
        moved = apply_calendar(session, changed)
    assert [(m.timer_id, m.old_due, m.new_due) for m in moved] == [(timer_id, before, date(2026, 2, 24))]

    with db.read() as session:
        timer = session.get(Timer, timer_id)
        assert timer.due_date == date(2026, 2, 24)
        note = session.scalar(select(HistoryEntry).where(HistoryEntry.case_id == case_id, HistoryEntry.kind == "deadline_moved"))
        assert note.data == {"timer": "plan_due", "from": "2026-02-23", "to": "2026-02-24", "reason": "calendar"}
        assert session.get(Case, case_id).version == 1  # a moved deadline is not a transition

    with db.write() as session:
        assert apply_calendar(session, changed) == []  # nothing more moves the second time
