"""My work: the open cases and deadlines a person should look at now, in the order they should.

One row per pending deadline of an open case (a state's deadline or an open obligation's), and one
for an open case that has none. What the list holds and its order depend on the role:

- a unit officer: every open case of their unit, the least time left first;
- a supervisor: the cases of the units they supervise, late first, then escalated, then by time left;
- the lead: its own reviews first (deadlines whose lateness is the lead's: a corrective report
  waiting for acceptance), then the province's late and escalated deadlines;
- an administrator or a viewer: the province's late and escalated deadlines.

For supervisors, the lead and viewers the list is monitoring; a unit officer also gets, on the row
of a case's state, the events they may fire from the list itself (``quick_events``).

A page is one statement whatever the number of units: scope (``permissions.visible_units``), late,
escalated and whose lateness it is (``lateness``) are SQL inside it. Working days left are counted
in Python on the calendar already in memory; the events come from the rows' case data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, case, literal, or_, select
from sqlalchemy.orm import Session

from .actions import AllowedEvent, events_now
from .clock import local_date
from .cursors import check_page_size
from .deadlines import working_days_left
from .definitions import Definition, Role, Target
from .errors import FieldProblem, ValidationFailed
from .lateness import ESCALATED_RANK, RANK_TARGET, Party, escalation_rank, is_late, timers_of_party
from .models import Case, Timer, Unit
from .permissions import Actor, visible_units
from .runtime import Runtime
from .timers import timer_key

MAX_PAGE = 10_000

# Events that need more than a click: a check-your-answers step on the case page.
CONFIRM_ON_CASE_PAGE = frozenset({"withdraw", "change_scope"})


class View(StrEnum):
    """Which list a person gets."""

    UNIT = "unit"  # a unit officer's work
    SUPERVISION = "supervision"  # a supervisor's units, late and escalated first
    LEAD = "lead"  # the lead's reviews, then the province's late and escalated
    PROVINCE = "province"  # an administrator's or a viewer's watch over late and escalated


def view_of(actor: Actor) -> View:
    """Return the list ``actor`` gets on My work."""
    return {
        Role.UNIT_OFFICER: View.UNIT,
        Role.SUPERVISOR: View.SUPERVISION,
        Role.LEAD: View.LEAD,
    }.get(actor.role, View.PROVINCE)


@dataclass(frozen=True)
class WorkRow:
    """One line of My work: a case and one of its pending deadlines (or none)."""

    case_id: int
    case_version: int
    unit_id: int
    unit_code: str
    unit_name: str
    workflow: str
    workflow_label: str
    state: str
    state_label: str
    stage: str | None
    timer_id: int | None
    deadline_label: str | None  # the deadline's label from the definition
    obligation_label: str | None  # for an obligation's deadline, the obligation's label
    due_date: date | None
    working_days_left: int | None  # negative: working days late
    late: bool
    level: int  # ladder levels fired so far
    escalated_to: Target | None  # the body the highest fired level went to
    own_review: bool  # the lead's own work (lateness counted against the lead)
    quick_events: tuple[AllowedEvent, ...] = ()  # events fired from the list itself, with a confirmation


@dataclass(frozen=True)
class WorkPage:
    """A page of My work."""

    view: View
    items: list[WorkRow]
    page: int
    page_size: int
    has_next: bool


def quick_events(actor: Actor, definition: Definition, state: str, data: dict[str, object], language: str) -> tuple[AllowedEvent, ...]:
    """Return the events My work offers as a button on a case: no fields, not from every state, not system's.

    Events with fields are forms on the case page; ``supersede`` (the reorganisation service's)
    and ``withdraw`` may fire from any state and are never on My work; ``change_scope`` and
    ``withdraw`` get a check-your-answers step on the case page.
    """
    out = []
    for allowed in events_now(actor, definition, state, data, language):
        spec = definition.spec.events[allowed.event]
        if allowed.fields or spec.from_ == "*" or allowed.event in CONFIRM_ON_CASE_PAGE:
            continue
        if spec.system_only:
            continue
        out.append(allowed)
    return tuple(out)


def _check(page: object, page_size: object) -> tuple[int, int]:
    size = check_page_size(page_size)
    if not isinstance(page, int) or isinstance(page, bool) or not 1 <= page <= MAX_PAGE:
        raise ValidationFailed([FieldProblem("page", "integer_range", {"low": 1, "high": MAX_PAGE})])
    return page, size


def my_work(
    session: Session, rt: Runtime, actor: Actor, *, page: int = 1, page_size: int = 50, language: str | None = None
) -> WorkPage:
    """Return one page of the actor's My work (one statement); ValidationFailed for a bad page."""
    number, size = _check(page, page_size)
    now = rt.clock.now()
    today = local_date(now)
    language = language or rt.language
    view = view_of(actor)

    late = case((and_(Timer.id.is_not(None), is_late(now)), 1), else_=0)
    rank = case((Timer.id.is_not(None), escalation_rank(rt.registry)), else_=0)
    escalated = case((rank >= ESCALATED_RANK, 1), else_=0)
    own: ColumnElement[int] = (
        case((and_(Timer.id.is_not(None), timers_of_party(rt.registry, Party.LEAD)), 1), else_=0)
        if view is View.LEAD else literal(0)
    )
    no_deadline = case((Timer.id.is_(None), 1), else_=0)

    query = (
        select(Case, Unit.code, Unit.name, Timer, late.label("late"), rank.label("rank"), own.label("own"))
        .join(Unit, Unit.id == Case.unit_id)
        .outerjoin(Timer, and_(Timer.case_id == Case.id, Timer.status == "pending"))
        .where(Case.closed_at.is_(None), visible_units(actor, today).covers(Case.unit_id))
    )
    if view is View.UNIT:
        order = [no_deadline, Timer.due_at, Case.id, Timer.id]
    elif view is View.SUPERVISION:
        order = [late.desc(), escalated.desc(), no_deadline, Timer.due_at, Case.id, Timer.id]
    else:
        watched = or_(late == 1, escalated == 1)
        query = query.where(or_(own == 1, watched) if view is View.LEAD else watched)
        order = [own.desc(), late.desc(), escalated.desc(), Timer.due_at, Case.id, Timer.id]
    query = query.order_by(*order).limit(size + 1).offset((number - 1) * size)
    rows = session.execute(query).tuples().all()

    items: list[WorkRow] = []
    offered: set[int] = set()
    for c, code, name, timer, is_late_row, r, is_own in rows[:size]:
        definition = rt.registry.get(c.workflow, c.workflow_version)
        state = definition.spec.states[c.state]
        buttons: tuple[AllowedEvent, ...] = ()
        if view is View.UNIT and c.id not in offered and (timer is None or timer.kind == "state"):
            offered.add(c.id)
            buttons = quick_events(actor, definition, c.state, c.data, language)
        items.append(
            WorkRow(
                case_id=c.id, case_version=c.version, unit_id=c.unit_id, unit_code=code, unit_name=name,
                workflow=c.workflow, workflow_label=definition.spec.label.get(language), state=c.state,
                state_label=state.label.get(language), stage=state.stage,
                timer_id=timer.id if timer else None,
                deadline_label=definition.timer_spec(timer_key(timer)).label.get(language) if timer else None,
                obligation_label=_obligation_label(definition, timer, language),
                due_date=timer.due_date if timer else None,
                working_days_left=working_days_left(rt.calendar, today, timer.due_date) if timer else None,
                late=bool(is_late_row), level=timer.level if timer else 0,
                escalated_to=RANK_TARGET.get(int(r or 0)), own_review=bool(is_own), quick_events=buttons,
            )
        )
    return WorkPage(view, items, number, size, len(rows) > size)


def _obligation_label(definition: Definition, timer: Timer | None, language: str) -> str | None:
    if timer is None or timer.kind != "obligation" or timer.name not in definition.spec.obligations:
        return None
    return definition.spec.obligations[timer.name].label.get(language)


__all__ = ["CONFIRM_ON_CASE_PAGE", "View", "WorkPage", "WorkRow", "my_work", "quick_events", "view_of"]

