"""A timer's reminders, and its ladder, are counted in one unit; reminders in calendar days avoid days off.

Steps are known by their position in the plan (a timer row stores the index of its next step, and
each firing is unique per timer and step), so the order of the steps must be the same on every
calendar. In one unit it is; with two units a calendar change could swap two steps.
"""

from __future__ import annotations

from datetime import date

import pytest

from qmsflow.engine import Database, Registry, Runtime, open_case, parse_definition
from qmsflow.engine.definitions import Definition, load_directory
from qmsflow.engine.errors import DefinitionError
from qmsflow.engine.sweep import sweep
from qmsflow.engine.timers import plan_steps, start_of_local_day
from qmsflow.workflows import DIRECTORY
from tests.conftest import Province, local

DEFINITION = """
name: reminded
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
        start: {date: START}
        length: 1
        unit: months
        reminders: REMINDERS
  done: {kind: end, label: {vi: c, en: c}}
events:
  finish: {label: {vi: f, en: f}, roles: [lead], from: [doing], to: done}
"""


def definition(start: str, reminders: str) -> Definition:
    return parse_definition(DEFINITION.replace("START", start).replace("REMINDERS", reminders), "reminded.yaml")


def test_reminders_in_two_units_are_refused_at_load_naming_the_timer() -> None:
    # Regression (review reproduction f_mixed_unit_reminders): 5 days and 4 working days before Tue
    # 10 Mar were planned as 5 Mar, then 4 Mar, in the order of their numbers; nothing fired on 4 Mar
    # and both were skipped on 5 Mar.
    with pytest.raises(DefinitionError) as refused:
        definition("2026-02-10", "[{before: 5, unit: days}, {before: 4, unit: working_days}]")
    (problem,) = refused.value.problems
    assert problem.key == "states.doing.timers.due.reminders"
    assert "timer due: reminders mix units (days, working_days)" in problem.message


def test_a_reminder_in_calendar_days_that_lands_on_a_day_off_comes_the_working_day_before(rt: Runtime) -> None:
    # due Mon 9 Mar 2026: one day before is Sunday 8 March, two days before Saturday 7 March
    spec = definition("2026-02-09", "[{before: 1, unit: days}, {before: 2, unit: days}, {before: 4, unit: days}]")
    steps = plan_steps(spec.timer_spec("doing.due"), (), date(2026, 2, 9), date(2026, 3, 9), rt.calendar)
    reminders = [s.at for s in steps if s.kind == "reminder"]
    assert reminders == [start_of_local_day(date(2026, 3, 5)), start_of_local_day(date(2026, 3, 6)), start_of_local_day(date(2026, 3, 6))]
    # across Tết: seven days before Mon 23 Feb 2026 is Mon 16 Feb, a Tết holiday; the reminder comes on
    # the last working day before the holiday
    tet = definition("2026-01-23", "[{before: 7, unit: days}]")
    (reminder, *_) = plan_steps(tet.timer_spec("doing.due"), (), date(2026, 1, 23), date(2026, 2, 23), rt.calendar)
    assert not rt.calendar.is_working_day(date(2026, 2, 16))
    assert reminder.at == start_of_local_day(rt.calendar.on_or_before(date(2026, 2, 16)))
    assert rt.calendar.is_working_day(reminder.at.date())


def test_the_reminder_moved_off_a_sunday_fires_on_the_friday(db: Database, rt: Runtime, province: Province) -> None:
    shipped, _ = load_directory(DIRECTORY)
    reminded = Runtime(
        registry=Registry([*shipped, definition("2026-02-09", "[{before: 1, unit: days}]")]),
        calendar=rt.calendar, clock=rt.clock, history_key=rt.history_key,
    )
    with db.write() as session:
        open_case(session, reminded, province.actors["lead"], province.units["SNV"], "reminded")
    assert sweep(db, reminded, local(date(2026, 3, 5), 9)).fired == []
    fired = sweep(db, reminded, local(date(2026, 3, 6), 9))
    assert [(f.kind, f.outcome) for f in fired.fired] == [("reminder", "fired")]
    assert sweep(db, reminded, local(date(2026, 3, 8), 9)).fired == []  # not again on the Sunday
