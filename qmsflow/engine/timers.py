"""Planning deadlines: from a timer spec and a start date to a due date and the steps the sweep fires.

The plan of a timer is derived, never stored: reminders (in order), the due step (fires ``on_due``),
then the escalation levels. A row keeps only the index of its next step and that step's instant, so
the sweep's query is an index range scan and a changed calendar re-plans by recomputing.

Opening and cancelling write their rows at once with Core statements instead of leaving them to a
flush: in a transition, the flush cost as much as everything else together (bench/RESULTS.md).
Cancelling keeps any loaded timer in step (``models.keep_in_step``; a savepoint rollback expires
it again, see ``models.expire_after_savepoint_rollback``). Opening returns its ``Timer`` without
attaching it to the session: an object attached as persistent survived a savepoint rollback as a
ghost of a row that no longer existed, and on SQLite the next row reused its id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from .calendar import LengthUnit, WorkingCalendar, add_months, deadline_instant
from .clock import LOCAL_TZ
from .definitions import Definition, LadderLevel, Target, TimerSpec
from .errors import FieldProblem, GuardFailed
from .models import Case, Timer, keep_in_step


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
    """Return the ordered plan: each reminder, the due step, then each ladder level.

    The plan has the same shape whatever the calendar says (one step per reminder and per level),
    so a timer's stored ``next_step`` still means the same step after a re-plan. Reminders that
    would fall on or before the start are passed over when the timer is opened (``first_step``).
    """
    steps: list[Step] = []
    # One unit for all of a timer's reminders (the loader refuses a mix), so this order is the order
    # of their instants on every calendar and a step's index means the same step after a replan.
    for reminder in sorted(spec.reminders, key=lambda r: r.before, reverse=True):
        day = _shift(calendar, due, -reminder.before, reminder.unit)
        if reminder.unit is not LengthUnit.WORKING_DAYS:
            # a reminder counted in calendar days that lands on a day off comes the working day before
            day = calendar.on_or_before(day)
        day = min(day, due)
        steps.append(Step(len(steps), "reminder", start_of_local_day(day)))
    steps.append(Step(len(steps), "due", deadline_instant(due)))
    for level, rung in enumerate(ladder, start=1):
        day = _shift(calendar, due, rung.after, rung.unit)
        if rung.unit is not LengthUnit.WORKING_DAYS:
            day = calendar.on_or_after(day)
        steps.append(Step(len(steps), "escalation", deadline_instant(day), level, rung.target))
    return steps


def first_step(steps: list[Step], start: date) -> int:
    """Return the index of the first step worth planning: reminders dated by the start day are moot."""
    start_instant = start_of_local_day(start)
    index = 0
    while steps[index].kind == "reminder" and steps[index].at <= start_instant:
        index += 1
    return index


def timer_key(timer: Timer) -> str:
    """Return the key the definition knows this timer by."""
    return f"obligation:{timer.name}" if timer.kind == "obligation" else f"{timer.state}.{timer.name}"


def resolve_start(spec: TimerSpec, data: Mapping[str, Any], opened_on: date, case_id: int | None, event: str = "") -> date:
    """Return the date a timer counts from: the entry/opening date, a date field, or a fixed date.

    A missing or malformed date field is refused as ``GuardFailed`` of ``event`` (the loader makes
    it impossible for shipped definitions; ``check_timer_starts`` in definitions.py says how).
    """
    if spec.start.date is not None:
        return spec.start.date
    if spec.start.field is not None:
        raw = data.get(spec.start.field)
        try:
            return date.fromisoformat(str(raw))
        except ValueError:
            raise GuardFailed(
                case_id, event, [FieldProblem(spec.start.field, "start_date_missing")]
            ) from None
    return opened_on


def resolve_starts(
    definition: Definition,
    state: str | None,
    event: str | None,
    data: Mapping[str, Any],
    recorded: Mapping[str, Any],
    today: date,
    case_id: int | None,
) -> dict[str, date]:
    """Return the start of every timer entering ``state`` and firing ``event`` will open, keyed like ``timer_key``.

    Called before anything is written, so a deadline that cannot be planned refuses the request
    instead of failing half-way: the state's timers and the obligations opened on entering it count
    from the case's data; obligations opened by ``event`` from what it recorded.
    """
    label = event or "open"
    starts: dict[str, date] = {}
    if state is not None and state not in definition.end_states():
        for name, spec in definition.spec.states[state].timers.items():
            starts[f"{state}.{name}"] = resolve_start(spec, data, today, case_id, label)
        for name, ob in definition.spec.obligations.items():
            if ob.opens.enter == state:
                starts[f"obligation:{name}"] = resolve_start(ob.timer, data, today, case_id, label)
    if event is not None:
        for name, ob in definition.spec.obligations.items():
            if ob.opens.event == event:
                starts[f"obligation:{name}"] = resolve_start(ob.timer, recorded, today, case_id, label)
    return starts


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
    first = first_step(steps, start)
    values: dict[str, Any] = {
        "case_id": case.id,
        "name": name,
        "kind": kind,
        "state": state,
        "obligation_id": obligation_id,
        "start_date": start,
        "due_date": due,
        "due_at": deadline_instant(due),
        "status": "pending",
        "level": 0,
        "next_step": first,
        "next_at": steps[first].at,
        "created_at": now,
        "closed_at": None,
    }
    # Written now with a Core INSERT; the object returned is not in the session (see the module doc).
    inserted = cast(CursorResult[Any], session.execute(_INSERT, values)).inserted_primary_key
    assert inserted is not None
    return Timer(id=inserted[0], **values)


def open_state_timers(
    session: Session, calendar: WorkingCalendar, definition: Definition, case: Case, now: datetime, starts: Mapping[str, date]
) -> list[Timer]:
    """Start the timers of the case's current state, each from its start in ``starts`` (``resolve_starts``)."""
    return [
        open_timer(
            session, calendar, definition, case, kind="state", name=name, state=case.state, now=now,
            start=starts[f"{case.state}.{name}"],
        )
        for name in definition.spec.states[case.state].timers
    ]


_TIMERS = cast(Table, Timer.__table__)
_INSERT = insert(_TIMERS)
_CANCEL = (
    update(_TIMERS)
    .where(_TIMERS.c.id == bindparam("timer_id"))
    .values(status="cancelled", closed_at=bindparam("closed_at"), next_at=None)
)
_CANCEL_STATE_TIMERS = (
    update(_TIMERS)
    .where(
        _TIMERS.c.case_id == bindparam("case_id_"),
        _TIMERS.c.status == "pending",
        _TIMERS.c.kind == "state",
        _TIMERS.c.state == bindparam("state_"),
    )
    .values(status="cancelled", closed_at=bindparam("closed_at"), next_at=None)
    .returning(_TIMERS.c.id)
)


def cancel_state_timers(session: Session, case: Case, state: str, now: datetime) -> int:
    """Cancel the pending timers of ``state`` (leaving it) with one statement; return how many.

    Nothing is read first: the UPDATE returns the ids, and any of those timers the session holds is
    set to match (the sweep checks whether the timer it is firing was closed by the transition).
    """
    ids = session.scalars(_CANCEL_STATE_TIMERS, {"case_id_": case.id, "state_": state, "closed_at": now}).all()
    for timer_id in ids:
        timer = session.identity_map.get(identity_key(Timer, timer_id))
        if timer is not None:
            _set_cancelled(cast(Timer, timer), now)
    return len(ids)


def cancel(session: Session, pending: list[Timer], now: datetime) -> int:
    """Cancel loaded timers with one UPDATE each, written now (see the module doc); return how many."""
    if pending:
        session.execute(_CANCEL, [{"timer_id": t.id, "closed_at": now} for t in pending])
    for timer in pending:
        _set_cancelled(timer, now)
    return len(pending)


def _set_cancelled(timer: Timer, now: datetime) -> None:
    keep_in_step(timer, {"status": "cancelled", "closed_at": now, "next_at": None})


def close_timers(session: Session, case: Case, now: datetime, *, obligation_id: int | None = None) -> int:
    """Cancel the pending timers of a fulfilled obligation or, without one, of the whole case."""
    query = select(Timer).where(Timer.case_id == case.id, Timer.status == "pending")
    if obligation_id is not None:
        query = query.where(Timer.obligation_id == obligation_id)
    return cancel(session, list(session.scalars(query)), now)


def replanned(timer: Timer, definition: Definition, calendar: WorkingCalendar) -> dict[str, Any] | None:
    """Return the timer's new due date, due instant and next instant on ``calendar``, or None if none moves.

    The timer keeps its next step: the plan has the same shape on every calendar (``plan_steps``).
    """
    key = timer_key(timer)
    spec = definition.timer_spec(key)
    due = calendar.due_date(timer.start_date, spec.length, spec.unit)
    steps = plan_steps(spec, definition.ladder(key), timer.start_date, due, calendar)
    next_at = steps[timer.next_step].at if timer.next_step < len(steps) else None
    if due == timer.due_date and next_at == timer.next_at:
        return None
    return {"due_date": due, "due_at": deadline_instant(due), "next_at": next_at}


__all__ = [
    "Step",
    "cancel",
    "cancel_state_timers",
    "close_timers",
    "first_step",
    "open_state_timers",
    "open_timer",
    "plan_steps",
    "replanned",
    "resolve_start",
    "resolve_starts",
    "start_of_local_day",
    "timer_key",
]
