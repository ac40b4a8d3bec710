"""Property: whatever calendar changes are applied between sweeps, each step fires at most once and none
is dropped without a ``skipped`` record.

Step indices are what a timer row stores (``next_step``) and what makes a firing unique, so a replan
must never make two steps trade places: one would fire twice under its new index, the other never.
The calendar changes at random between sweeps (extra days off, applied with a replan), the clock
moves on at random, and at the end every step of every timer has exactly one firing record.
"""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from qmsflow.engine import (
    SYSTEM,
    Actor,
    CalendarOverrides,
    FixedClock,
    Registry,
    Role,
    Runtime,
    WorkingCalendar,
    open_case,
    parse_definition,
)
from qmsflow.engine.db import Database, make_engine
from qmsflow.engine.definitions import load_directory
from qmsflow.engine.models import Timer, TimerFiring
from qmsflow.engine.replanning import replan_calendar
from qmsflow.engine.sweep import sweep
from qmsflow.engine.timers import plan_steps, timer_key
from qmsflow.engine.units import UnitKind, create_unit
from qmsflow.workflows import DIRECTORY
from tests.conftest import local

# Reminders and a ladder counted in calendar days, besides the shipped (working-day) lifecycle.
IN_DAYS = """
name: in_days
version: 1
label: {vi: x, en: x}
initial: doing
states:
  doing:
    kind: task
    label: {vi: a, en: a}
    timers:
      due:
        label: {vi: a, en: a}
        length: 20
        unit: days
        reminders: [{before: 9, unit: days}, {before: 3, unit: days}, {before: 1, unit: days}]
        escalation:
          - {after: 0, unit: days, target: unit_head}
          - {after: 2, unit: days, target: supervisor}
          - {after: 6, unit: days, target: lead}
  done: {kind: end, label: {vi: c, en: c}}
events:
  finish: {label: {vi: f, en: f}, roles: [lead], from: [doing], to: done}
"""
WINDOW = [date(2026, 1, 5) + timedelta(days=i) for i in range(120)]  # the days a change may give off
WORKDAYS_IN_WINDOW = [d for d in WINDOW if d.weekday() < 5]

changes = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=12),  # days the clock moves on before the next sweep
        st.none() | st.sets(st.sampled_from(WORKDAYS_IN_WINDOW), max_size=4),  # None: the calendar stays
    ),
    min_size=1,
    max_size=8,
)


@pytest.fixture(scope="module")
def registry() -> Registry:
    shipped, _ = load_directory(DIRECTORY)
    return Registry([*shipped, parse_definition(IN_DAYS, "in_days.yaml")])


def runtime(registry: Registry, shipped: CalendarOverrides, days_off: set[date], clock: FixedClock) -> Runtime:
    overrides = CalendarOverrides(
        days_off={**shipped.days_off, **{d: "test" for d in days_off}},
        working_days={d: n for d, n in shipped.working_days.items() if d not in days_off},
    )
    return Runtime(registry=registry, calendar=WorkingCalendar(overrides), clock=clock, history_key=b"k")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=changes)
def test_calendar_changes_between_sweeps_never_fire_a_step_twice_nor_drop_one_silently(
    steps: list[tuple[int, set[date] | None]],
    registry: Registry,
    shipped_overrides: CalendarOverrides,
    sqlite_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = tmp_path_factory.mktemp("calendar-changes") / "db.sqlite3"
    shutil.copy(sqlite_template, path)  # migrated, with the shipped calendar stored
    db = Database(make_engine(f"sqlite:///{path}"))
    try:
        clock = FixedClock(local(date(2026, 1, 5)))
        rt = runtime(registry, shipped_overrides, set(), clock)
        with db.write() as session:
            top = create_unit(session, code="91", name="PC", kind=UnitKind.PROVINCE_PC.value, valid_from=date(2025, 7, 1), rt=rt, actor=SYSTEM)
            dept = create_unit(
                session, code="SNV", name="SNV", kind=UnitKind.DEPARTMENT.value, valid_from=date(2025, 7, 1), parent=top,
                is_lead=True, rt=rt, actor=SYSTEM,
            )
            lead = Actor(username="lead", role=Role.LEAD, unit_id=dept.id)
            open_case(session, rt, lead, dept, "qms_lifecycle")
            open_case(session, rt, lead, dept, "in_days")
        with db.read() as session:  # the first step each timer plans: reminders dated by its start are moot
            first = dict(session.execute(select(Timer.id, Timer.next_step)).tuples().all())
        days_off: set[date] = set()
        for days, change in steps:
            clock.advance(timedelta(days=days))
            if change is not None and change != days_off:
                days_off = change
                rt = runtime(registry, shipped_overrides, days_off, clock)
                assert replan_calendar(db, rt, actor=SYSTEM).applied
            sweep(db, rt, clock.now())
        clock.set(local(date(2027, 1, 5)))
        sweep(db, rt, clock.now())  # long after every step: whatever is left fires or is skipped now

        with db.read() as session:
            recorded = Counter(session.execute(select(TimerFiring.timer_id, TimerFiring.step)).tuples().all())
            assert [key for key, n in recorded.items() if n > 1] == []  # at most once
            for timer in session.scalars(select(Timer)):
                definition = registry.get("qms_lifecycle" if timer.name == "plan_due" else "in_days", 1)
                key = timer_key(timer)
                plan = plan_steps(definition.timer_spec(key), definition.ladder(key), timer.start_date, timer.due_date, rt.calendar)
                assert timer.status == "done" and timer.next_step == len(plan)
                # every step from the first planned one has its record, fired or skipped: none dropped
                assert {s for t, s in recorded if t == timer.id} == set(range(first[timer.id], len(plan)))
                # in due order: the plan's instants never go back, on whatever calendar it was replanned
                assert [s.at for s in plan] == sorted(s.at for s in plan)
    finally:
        db.dispose()
