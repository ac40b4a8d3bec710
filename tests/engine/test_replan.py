"""A changed calendar override re-plans the pending deadlines it affects, and says so in the history."""

from __future__ import annotations

import threading
from datetime import date

from sqlalchemy import delete, select

from qmsflow.engine import SYSTEM, CalendarOverrides, Database, Runtime, WorkingCalendar, calendar_store, open_case
from qmsflow.engine.cases import pending_timers
from qmsflow.engine.models import CalendarDay, Case, HistoryEntry, Meta, Timer
from qmsflow.engine.replanning import apply_calendar, stored_fingerprint
from tests.conftest import Province, got


def test_an_extra_day_off_moves_the_deadlines_that_span_it(db: Database, rt: Runtime, province: Province) -> None:
    with db.write() as session:
        apply_calendar(session, rt, actor=SYSTEM)  # record the fingerprint the first timers are planned with
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
        moved = apply_calendar(session, changed, actor=SYSTEM)
    assert [(m.timer_id, m.old_due, m.new_due) for m in moved] == [(timer_id, before, date(2026, 2, 24))]

    with db.read() as session:
        timer = got(session, Timer, timer_id)
        assert timer.due_date == date(2026, 2, 24)
        note = session.scalar(select(HistoryEntry).where(HistoryEntry.case_id == case_id, HistoryEntry.kind == "deadline_moved"))
        assert note.data == {"timer": "plan_due", "from": "2026-02-23", "to": "2026-02-24", "reason": "calendar"}
        assert got(session, Case, case_id).version == 1  # a moved deadline is not a transition

    with db.write() as session:
        assert apply_calendar(session, changed, actor=SYSTEM) == []  # nothing more moves the second time


def test_a_replan_keeps_each_timer_on_the_same_next_step(db: Database, rt: Runtime, province: Province) -> None:
    # regression: the plan's shape used to depend on the calendar (reminders before the start were
    # dropped, reminders on the same day merged), so a re-plan could shift next_step onto another step
    from qmsflow.engine.sweep import sweep
    from qmsflow.engine.timers import plan_steps
    from tests.conftest import local

    minutes = {"inspection_decision": "1/QĐ", "minutes_number": "2/BB", "minutes_signed_on": "2026-01-05", "findings": "x"}
    with db.write() as session:
        apply_calendar(session, rt, actor=SYSTEM)
        case = open_case(session, rt, province.actors["lead"], province.units["THPT-TNH"], "corrective_action", minutes)
        (timer,) = pending_timers(session, case)
        timer_id = timer.id
    assert timer.due_date == date(2026, 3, 5)
    first = sweep(db, rt, local(date(2026, 2, 12), 8))  # 10 working days before, across Tết
    assert [(f.step, f.kind, f.outcome) for f in first.fired] == [(0, "reminder", "fired")]

    # two extra days off on the due date and the day after move the deadline to Monday 9 March
    extra = CalendarOverrides.from_mapping({2026: {"days_off": ["2026-03-05", "2026-03-06"]}})
    changed = Runtime(registry=rt.registry, calendar=WorkingCalendar(extra), clock=rt.clock, history_key=rt.history_key)
    with db.write() as session:
        (moved,) = apply_calendar(session, changed, actor=SYSTEM)
    assert (moved.old_due, moved.new_due) == (date(2026, 3, 5), date(2026, 3, 9))
    definition = rt.registry.get("corrective_action", 1)
    spec, ladder = definition.timer_spec("open.report_due"), definition.ladder("open.report_due")
    before = plan_steps(spec, ladder, date(2026, 1, 5), date(2026, 3, 5), rt.calendar)
    after = plan_steps(spec, ladder, date(2026, 1, 5), date(2026, 3, 9), changed.calendar)
    assert [(s.kind, s.level) for s in before] == [(s.kind, s.level) for s in after]

    with db.read() as session:
        timer = got(session, Timer, timer_id)
        assert timer.next_step == 1 and timer.next_at == local(date(2026, 3, 2), 0)  # 3 working days before 9 Mar
    second = sweep(db, changed, local(date(2026, 3, 2), 8))
    assert [(f.step, f.kind, f.outcome) for f in second.fired] == [(1, "reminder", "fired")]
    assert sweep(db, changed, local(date(2026, 3, 9), 23, 0)).fired == []  # the old due date has no effect
    due = sweep(db, changed, local(date(2026, 3, 10), 0, 5))
    assert [(f.kind, f.level) for f in due.fired] == [("due", 0), ("escalation", 1)]


def test_the_plan_has_the_same_shape_when_a_reminder_falls_before_the_start(rt: Runtime) -> None:
    from qmsflow.engine.timers import first_step, plan_steps

    definition = rt.registry.get("corrective_action", 1)
    spec, ladder = definition.timer_spec("open.report_due"), definition.ladder("open.report_due")
    late_start = plan_steps(spec, ladder, date(2026, 2, 27), date(2026, 3, 5), rt.calendar)
    early_start = plan_steps(spec, ladder, date(2026, 1, 5), date(2026, 3, 5), rt.calendar)
    assert [(s.kind, s.level) for s in late_start] == [(s.kind, s.level) for s in early_start]
    assert first_step(late_start, date(2026, 2, 27)) == 1  # the 10-working-day reminder predates the start
    assert first_step(early_start, date(2026, 1, 5)) == 0


def test_inits_starting_together_on_a_new_database_store_the_calendar_once(db: Database, rt: Runtime) -> None:
    # Regression: with no fingerprint row yet there was nothing to lock; every starter stored it and
    # all but one failed on the duplicate key.
    with db.write() as session:
        session.execute(delete(Meta))
        session.execute(delete(CalendarDay))
    with db.read() as session:
        assert stored_fingerprint(session) is None
    starters = 4
    barrier = threading.Barrier(starters)
    results: list[bool] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            with db.write() as session:
                results.append(calendar_store.seed(session, rt.calendar, rt.history_key, SYSTEM, rt.clock.now()))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [False] * (starters - 1) + [True]
    with db.read() as session:
        assert stored_fingerprint(session) == rt.calendar.fingerprint()
        assert calendar_store.load_overrides(session) == rt.calendar.overrides
