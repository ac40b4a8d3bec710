"""Pending deadlines as people read them: label, due date, working days left, late, escalated.

One statement per list; whether a deadline is late and whose lateness it is come from the SQL of
``lateness``, so this page and the case-list filters cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from .calendar import WorkingCalendar
from .clock import local_date
from .definitions import Target
from .errors import FieldProblem, ValidationFailed
from .lateness import RANK_TARGET, escalation_rank, is_late, responsible_unit
from .models import Case, Obligation, Timer, Unit
from .permissions import Actor, visible_units
from .runtime import Runtime
from .timers import timer_key

MAX_DEADLINES = 1000


@dataclass(frozen=True)
class Deadline:
    """One pending timer of a case: a state's deadline or an open obligation's."""

    timer_id: int
    case_id: int
    unit_id: int
    unit_code: str
    name: str
    label: str
    kind: str  # state | obligation
    state: str | None
    obligation: str | None
    obligation_label: str | None
    cycle: int | None
    due_date: date
    due_at: datetime
    working_days_left: int  # 0: due today; negative: working days since it passed
    late: bool
    counts_against_unit_id: int | None  # whose lateness it is (lateness.responsible_unit)
    level: int
    escalated_to: Target | None
    next_step: int
    next_at: datetime | None


def working_days_left(calendar: WorkingCalendar, today: date, due: date) -> int:
    """Return the working days after ``today`` up to ``due``; negative, those after ``due`` up to today."""
    step = 1 if due >= today else -1
    first, last = (today, due) if step == 1 else (due, today)
    count = 0
    day = first + timedelta(days=1)
    while day <= last:
        if calendar.is_working_day(day):
            count += 1
        day += timedelta(days=1)
    return step * count


def _deadlines(session: Session, rt: Runtime, actor: Actor, *, case_id: int | None, due_before: datetime | None,
               limit: int, language: str | None, unit_id: int | None = None) -> list[Deadline]:
    now = rt.clock.now()
    today = local_date(now)
    language = language or rt.language
    query = (
        select(
            Timer, Case.workflow, Case.workflow_version, Case.unit_id, Unit.code, Obligation.cycle,
            is_late(now).label("late"), responsible_unit(rt.registry, today).label("against"),
            escalation_rank(rt.registry).label("rank"),
        )
        .join(Case, Case.id == Timer.case_id)
        .join(Unit, Unit.id == Case.unit_id)
        .outerjoin(Obligation, Obligation.id == Timer.obligation_id)
        .where(Timer.status == "pending", visible_units(actor, today).covers(Case.unit_id))
        .order_by(Timer.next_at, Timer.id)
        .limit(limit)
    )
    if case_id is not None:
        query = query.where(Timer.case_id == case_id)
    if unit_id is not None:
        query = query.where(Case.unit_id == unit_id)
    if due_before is not None:
        query = query.where(Timer.next_at < due_before)
    out = []
    for timer, workflow, version, unit_id, code, cycle, late, against, rank in session.execute(query).tuples():
        definition = rt.registry.get(workflow, version)
        key = timer_key(timer)
        obligation = timer.name if timer.kind == "obligation" else None
        out.append(
            Deadline(
                timer_id=timer.id, case_id=timer.case_id, unit_id=unit_id, unit_code=code, name=timer.name,
                label=definition.timer_spec(key).label.get(language), kind=timer.kind, state=timer.state,
                obligation=obligation,
                obligation_label=definition.spec.obligations[obligation].label.get(language) if obligation else None,
                cycle=cycle, due_date=timer.due_date, due_at=timer.due_at,
                working_days_left=working_days_left(rt.calendar, today, timer.due_date), late=bool(late),
                counts_against_unit_id=against, level=timer.level, escalated_to=RANK_TARGET.get(int(rank or 0)),
                next_step=timer.next_step, next_at=timer.next_at,
            )
        )
    return out


def case_deadlines(
    session: Session, rt: Runtime, actor: Actor, case: Case, *, language: str | None = None
) -> list[Deadline]:
    """Return the pending deadlines and open obligations' deadlines of ``case``, next step first.

    Out of scope, the list is empty: ``get_case`` is what reports a hidden case as not found.
    """
    return _deadlines(session, rt, actor, case_id=case.id, due_before=None, limit=MAX_DEADLINES, language=language)


def unit_deadlines(
    session: Session, rt: Runtime, actor: Actor, unit_id: int, *, language: str | None = None
) -> list[Deadline]:
    """Return the pending deadlines of every case of ``unit_id`` the actor sees, next step first (one statement)."""
    return _deadlines(session, rt, actor, case_id=None, due_before=None, limit=MAX_DEADLINES, language=language, unit_id=unit_id)


def upcoming_deadlines(
    session: Session,
    rt: Runtime,
    actor: Actor,
    *,
    due_before: datetime | None = None,
    limit: int = 100,
    language: str | None = None,
) -> list[Deadline]:
    """Return the pending deadlines of every case the actor sees, by their next step (one statement)."""
    problems = []
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_DEADLINES:
        problems.append(FieldProblem("limit", "integer_range", {"low": 1, "high": MAX_DEADLINES}))
    if due_before is not None and due_before.tzinfo is None:
        problems.append(FieldProblem("due_before", "aware_instant"))
    if problems:
        raise ValidationFailed(problems)
    return _deadlines(session, rt, actor, case_id=None, due_before=due_before, limit=limit, language=language)


__all__ = ["Deadline", "case_deadlines", "unit_deadlines", "upcoming_deadlines", "working_days_left"]
