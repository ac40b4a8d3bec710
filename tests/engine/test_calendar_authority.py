"""One calendar authority: deadlines are planned and fired only on the stored calendar, applied explicitly.

A process whose calendar differs from the stored one (another calendar file, another ``holidays``
version) refuses to sweep and to plan deadlines, with a typed error logged once; a replan stores the
new calendar, re-plans in committed batches under the case-then-timers lock order, and stops sweeps
until its last batch; one cut short resumes.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import date

import pytest
from sqlalchemy import func, select, text

from qmsflow.engine import SYSTEM, CalendarOverrides, Database, Runtime, WorkingCalendar, calendar_store, open_case
from qmsflow.engine.cases import pending_timers
from qmsflow.engine.errors import CalendarMismatch
from qmsflow.engine.models import Case, HistoryEntry, Timer, TimerFiring
from qmsflow.engine.replanning import replan_batch, replan_calendar
from qmsflow.engine.sweep import sweep
from qmsflow.engine.timers import plan_steps, timer_key
from tests.conftest import Province, allow_another_open_case, got, local

# One more day off (Fri 23 Jan 2026) than the shipped calendar: the plan_due deadline of a lifecycle
# opened on Mon 5 Jan moves from Mon 23 Feb to Tue 24 Feb.
EXTRA_DAY_OFF = {2025: {"working_days": ["2025-04-26"]}, 2026: {"days_off": ["2026-01-23"], "working_days": ["2026-08-22"]}}


def wait_until_blocked_on_a_lock(db: Database) -> None:
    """Return once another connection waits for a row lock (the replan reaching the case the test holds)."""
    waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
    for _ in range(600):  # a hang guard, not a timing expectation
        with db.engine.connect() as connection:
            if connection.scalar(waiting):
                return
        time.sleep(0.05)
    raise AssertionError("the replan never waited for the case lock")


def on_calendar(rt: Runtime, raw: dict[int, dict[str, list[str]]]) -> Runtime:
    """The same runtime on another calendar: what a process started with another calendar file has."""
    return Runtime(
        registry=rt.registry, calendar=WorkingCalendar(CalendarOverrides.from_mapping(raw)), clock=rt.clock, history_key=rt.history_key
    )


def open_lifecycles(db: Database, rt: Runtime, province: Province, count: int) -> list[int]:
    ids = []
    with db.write() as session:
        for _ in range(count):
            unit = province.units["SNV"]
            allow_another_open_case(session, unit)
            ids.append(open_case(session, rt, province.actors["lead"], unit, "qms_lifecycle").id)
    return ids


def test_a_process_on_another_calendar_refuses_to_sweep_and_to_plan_and_logs_it_once(
    db: Database, rt: Runtime, province: Province, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression (review reproductions b_livelock, b2_livelock_default_batch): a scheduler on a
    # calendar with one more day off than the rows were planned on claimed the same cases in every
    # batch and fired nothing. Now it refuses to sweep at all, and the rows stay as the stored
    # calendar planned them.
    (case_id,) = open_lifecycles(db, rt, province, 1)
    other = on_calendar(rt, EXTRA_DAY_OFF)
    caplog.set_level(logging.ERROR, logger="qmsflow.engine.calendar_store")
    for _ in range(3):
        with pytest.raises(CalendarMismatch) as refused:
            sweep(db, other, local(date(2026, 3, 10)))
    assert (refused.value.process, refused.value.stored) == (other.calendar.fingerprint(), rt.calendar.fingerprint())
    assert "qmsflow calendar replan" in str(refused.value)
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1  # once, not every sweep
    with db.write() as session, pytest.raises(CalendarMismatch):
        open_case(session, other, province.actors["lead"], province.units["SGDDT"], "qms_lifecycle")
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 1  # nothing was opened
        assert session.scalar(select(func.count()).select_from(TimerFiring)) == 0  # nothing fired
        (timer,) = pending_timers(session, got(session, Case, case_id))
        assert timer.due_date == date(2026, 2, 23)  # and nothing was re-planned to the other calendar


def test_another_holidays_version_is_another_calendar(db: Database, rt: Runtime, province: Province, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WorkingCalendar, "holidays_version", property(lambda self: "0.0-other"))
    other = on_calendar(rt, {})
    other.calendar.overrides = rt.calendar.overrides  # the same days: only the package differs
    with pytest.raises(CalendarMismatch, match="holidays package 0.0-other"):
        sweep(db, other, local(date(2026, 3, 10)))


def test_a_replan_moves_deadlines_in_committed_batches_and_then_sweeps_go_on(db: Database, rt: Runtime, province: Province) -> None:
    ids = open_lifecycles(db, rt, province, 5)
    new = on_calendar(rt, EXTRA_DAY_OFF)
    batches: list[int] = []
    report = replan_calendar(db, new, actor=province.actors["admin"], batch_size=2, on_batch=lambda moved: batches.append(len(moved)))
    assert report.applied and batches == [2, 2, 1]
    assert sorted(m.case_id for m in report.moved) == ids
    assert {(m.old_due, m.new_due) for m in report.moved} == {(date(2026, 2, 23), date(2026, 2, 24))}
    with db.read() as session:
        assert calendar_store.stored(session).fingerprint == new.calendar.fingerprint()
        assert calendar_store.load_overrides(session) == new.calendar.overrides
        assert session.scalar(select(func.count()).where(HistoryEntry.kind == "deadline_moved")) == 5
    with pytest.raises(CalendarMismatch):  # the old calendar is now the other one
        sweep(db, rt, local(date(2026, 2, 24), 1))
    fired = sweep(db, new, local(date(2026, 2, 25), 1))
    assert sorted({f.case_id for f in fired.fired if f.kind == "due"}) == ids


def test_a_replan_cut_short_stops_sweeps_and_resumes(db: Database, rt: Runtime, province: Province) -> None:
    ids = open_lifecycles(db, rt, province, 3)
    new = on_calendar(rt, EXTRA_DAY_OFF)
    with db.write() as session:
        calendar_store.begin_apply(session, new.calendar, new.history_key, province.actors["admin"], new.clock.now())
    with db.write() as session:  # one batch, then the process dies
        moved, _ = replan_batch(session, new, after=0, limit=1, now=new.clock.now(), lock=not db.is_sqlite)
    assert [m.case_id for m in moved] == ids[:1]
    for process in (rt, new):  # neither calendar may fire while timers are planned on both
        with pytest.raises(CalendarMismatch, match="being re-planned"):
            sweep(db, process, local(date(2026, 2, 25), 1))
    with db.write() as session, pytest.raises(CalendarMismatch):  # the old calendar may not plan either
        open_case(session, rt, province.actors["lead"], province.units["SGDDT"], "qms_lifecycle")
    with db.write() as session:  # the calendar being applied may: its plans are what the replan makes
        opened = open_case(session, new, province.actors["lead"], province.units["SGDDT"], "qms_lifecycle")
        (timer,) = pending_timers(session, opened)
        assert timer.due_date == date(2026, 2, 24)
    resumed = replan_calendar(db, new, actor=province.actors["admin"])
    assert resumed.applied and sorted(m.case_id for m in resumed.moved) == ids[1:]  # the first is not moved twice
    assert len(sweep(db, new, local(date(2026, 2, 25), 1)).fired) > 0


@pytest.mark.parametrize("backend", ["postgresql"])  # row locks; on SQLite the write lock serialises the two
def test_a_replan_waits_for_a_sweep_holding_the_case_and_keeps_its_step(db: Database, rt: Runtime, province: Province) -> None:
    # Regression (review reproduction g_replan_lost_update): the replan read timers without locks and
    # wrote a stale next_at next to the sweep's new next_step, after which the timer livelocked.
    (case_id,) = open_lifecycles(db, rt, province, 1)
    new = on_calendar(rt, EXTRA_DAY_OFF)
    session = db.write_factory()
    session.begin()
    # a sweep in the middle of its batch: the case locked first, then the timer moved on to its next step
    session.execute(select(Case).where(Case.id == case_id).with_for_update())
    timer = session.scalar(select(Timer).where(Timer.case_id == case_id).with_for_update())
    assert timer is not None and timer.next_step == 0
    timer.next_step = 1
    session.flush()
    done: list[object] = []
    replanning = threading.Thread(target=lambda: done.append(replan_calendar(db, new, actor=SYSTEM)))
    replanning.start()
    wait_until_blocked_on_a_lock(db)
    session.commit()
    session.close()
    replanning.join(timeout=60)
    assert done, "the replan did not finish"
    with db.read() as read:
        timer = read.scalar(select(Timer).where(Timer.case_id == case_id))
        assert timer is not None
        definition = rt.registry.get("qms_lifecycle", 1)
        key = timer_key(timer)
        steps = plan_steps(definition.timer_spec(key), definition.ladder(key), timer.start_date, timer.due_date, new.calendar)
        assert timer.next_step == 1 and timer.next_at == steps[1].at  # the sweep's step, at the new calendar's instant
