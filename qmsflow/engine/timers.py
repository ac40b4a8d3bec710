"""Planning deadlines: from a timer spec and a start date to a due date and the steps the sweep fires.

The plan of a timer is derived, never stored: reminders (in order), the due step (fires ``on_due``),
then the escalation levels. A row keeps only the index of its next step and that step's instant, so
the sweep's query is an index range scan and a changed calendar re-plans by recomputing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .calendar import LengthUnit, WorkingCalendar, add_months, deadline_instant
from .clock import LOCAL_TZ, local_date
from .definitions import Definition, LadderLevel, Target, TimerSpec
from .errors import FieldProblem, GuardFailed
from .models import Case, Timer


@dataclass(frozen=True)
class Step:
    """One moment in a timer's plan."""

    index: int
    kind: str  # reminder | due | escalation
    at: datetime
    level: int = 0
    target: Target | None = None


def start_of_local_day(day: date) -> datetime:
    """Return 00:00 Asia/Ho_Chi_Minh on ``day`` as an aware datetime."""
    return datetime.combine(day, time(0, 0), tzinfo=LOCAL_TZ)


def _shift(calendar: WorkingCalendar, day: date, amount: int, unit: LengthUnit) -> date:
    if unit is LengthUnit.WORKING_DAYS:
        return calendar.add_working_days(day, amount)
    if unit is LengthUnit.DAYS:
        return day + timedelta(days=amount)
    return add_months(day, amount)


def plan_steps(
    spec: TimerSpec, ladder: tuple[LadderLevel, ...], start: date, due: date, calendar: WorkingCalendar
) -> list[Step]:
    """Return the ordered plan: reminders after the start, the due step, then each ladder level."""
    steps: list[Step] = []
    reminder_days = sorted(
        {_shift(calendar, due, -r.before, r.unit) for r in spec.reminders}, reverse=False
    )
    for day in reminder_days:
        if start < day <= due:
            steps.append(Step(len(steps), "reminder", start_of_local_day(day)))
    steps.append(Step(len(steps), "due", deadline_instant(due)))
    for level, rung in enumerate(ladder, start=1):
        day = _shift(calendar, due, rung.after, rung.unit)
        if rung.unit is not LengthUnit.WORKING_DAYS:
            day = calendar.on_or_after(day)
        steps.append(Step(len(steps), "escalation", deadline_instant(day), level, rung.target))
    return steps


def timer_key(timer: Timer) -> str:
    """Return the key the definition knows this timer by."""
    return f"obligation:{timer.name}" if timer.kind == "obligation" else f"{timer.state}.{timer.name}"


def resolve_start(spec: TimerSpec, data: dict[str, Any], opened_on: date, case_id: int | None) -> date:
    """Return the date a timer counts from: the entry/opening date, a date field, or a fixed date."""
    if spec.start.date is not None:
        return spec.start.date
    if spec.start.field is not None:
        raw = data.get(spec.start.field)
        try:
            return date.fromisoformat(str(raw))
        except ValueError:
            raise GuardFailed(
                case_id, "", [FieldProblem(spec.start.field, "a date is needed to start the deadline")]
            ) from None
    return opened_on


def open_timer(
    session: Session,
    calendar: WorkingCalendar,
    definition: Definition,
    case: Case,
    *,
    kind: str,
    name: str,
    now: datetime,
    state: str | None = None,
    obligation_id: int | None = None,
    start: date,
) -> Timer:
    """Plan and store one timer for ``case``."""
    key = f"{state}.{name}" if kind == "state" else f"obligation:{name}"
    spec = definition.timer_spec(key)
    due = calendar.due_date(start, spec.length, spec.unit)
    steps = plan_steps(spec, definition.ladder(key), start, due, calendar)
    timer = Timer(
        case_id=case.id,
        name=name,
        kind=kind,
        state=state,
        obligation_id=obligation_id,
        start_date=start,
        due_date=due,
        due_at=deadline_instant(due),
        status="pending",
        level=0,
        next_step=0,
        next_at=steps[0].at,
        created_at=now,
    )
    session.add(timer)
    return timer


def open_state_timers(
    session: Session, calendar: WorkingCalendar, definition: Definition, case: Case, now: datetime
) -> list[Timer]:
    """Start the timers of the case's current state."""
    state_spec = definition.spec.states[case.state]
    today = local_date(now)
    return [
        open_timer(
            session,
            calendar,
            definition,
            case,
            kind="state",
            name=name,
            state=case.state,
            now=now,
            start=resolve_start(spec, case.data, today, case.id),
        )
        for name, spec in state_spec.timers.items()
    ]


def close_timers(session: Session, case: Case, now: datetime, *, state: str | None = None, obligation_id: int | None = None, everything: bool = False) -> int:
    """Cancel pending timers of a left state, a fulfilled obligation, or (``everything``) the whole case."""
    query = select(Timer).where(Timer.case_id == case.id, Timer.status == "pending")
    if not everything:
        if obligation_id is not None:
            query = query.where(Timer.obligation_id == obligation_id)
        else:
            query = query.where(Timer.kind == "state", Timer.state == state)
    count = 0
    for timer in session.scalars(query):
        timer.status = "cancelled"
        timer.closed_at = now
        timer.next_at = None
        count += 1
    return count


def replan(
    session: Session,
    calendar: WorkingCalendar,
    definition_of: Callable[[int], Definition],
    since: date | None = None,
) -> list[tuple[Timer, date, date]]:
    """Recompute the due dates of pending timers (after a calendar change); return what moved.

    ``definition_of(case_id)`` returns the definition a timer's case runs on. Only timers that
    started on or before the latest changed date can move; ``since`` narrows the scan to those whose
    due date is on or after it.
    """
    moved = []
    query = select(Timer).where(Timer.status == "pending")
    if since is not None:
        query = query.where(Timer.due_date >= since)
    for timer in session.scalars(query):
        definition = definition_of(timer.case_id)
        key = timer_key(timer)
        spec = definition.timer_spec(key)
        due = calendar.due_date(timer.start_date, spec.length, spec.unit)
        steps = plan_steps(spec, definition.ladder(key), timer.start_date, due, calendar)
        if due != timer.due_date or (timer.next_step < len(steps) and steps[timer.next_step].at != timer.next_at):
            old = timer.due_date
            timer.due_date = due
            timer.due_at = deadline_instant(due)
            timer.next_at = steps[timer.next_step].at if timer.next_step < len(steps) else None
            moved.append((timer, old, due))
    return moved


__all__ = [
    "Step",
    "close_timers",
    "open_state_timers",
    "open_timer",
    "plan_steps",
    "replan",
    "resolve_start",
    "start_of_local_day",
    "timer_key",
]
