"""The case services: open a case, advance it by an event, read it. The caller owns the session.

``advance`` checks in a fixed order, so every caller sees the same error for the same request:
scope (NotFound), role (NotPermitted), expected version (StaleVersion), then state (InvalidTransition)
and data and conditions (GuardFailed). Only when all pass does it change anything: the case row, one
history row, the state's timers and the obligations, all in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from . import history, timers
from .clock import local_date
from .definitions import Definition
from .errors import FieldProblem, GuardFailed, InvalidTransition, NotFound, NotPermitted, StaleVersion
from .fields import clean_fields
from .models import Case, Obligation, Timer, Unit
from .permissions import Actor, Decision, decide, require, scope_clause
from .runtime import Runtime


@dataclass(frozen=True)
class Advanced:
    """What one transition did."""

    case: Case
    event: str
    from_state: str
    to_state: str
    recorded: dict[str, Any]


# Built once: a statement object memoizes its cache key, so running it costs no construction
# and no key computation (SQLAlchemy's "SQL compilation caching").
_CASE_FOR_UPDATE = select(Case).where(Case.id == bindparam("case_id")).with_for_update()
_OPEN_OBLIGATION = (
    select(Obligation)
    .where(Obligation.case_id == bindparam("case_id"), Obligation.name == bindparam("name"), Obligation.status == "open")
    .order_by(Obligation.id)
    .limit(1)
)


def load_case_for_update(session: Session, case_id: int) -> Case:
    """Return the case row locked for this transaction (FOR UPDATE on PostgreSQL)."""
    case = session.scalar(_CASE_FOR_UPDATE, {"case_id": case_id})
    if case is None:
        raise NotFound("case", case_id)
    return case


def get_case(session: Session, rt: Runtime, actor: Actor, case_id: int) -> Case:
    """Return a case the actor may see; NotFound otherwise (one statement: the scope is in it)."""
    case = session.scalar(
        select(Case).where(Case.id == case_id, scope_clause(actor, local_date(rt.clock.now()), Case.unit_id))
    )
    if case is None:
        raise NotFound("case", case_id)
    return case


def list_cases(
    session: Session,
    rt: Runtime,
    actor: Actor,
    *,
    workflow: str | None = None,
    state: str | None = None,
    unit_id: int | None = None,
    limit: int = 200,
) -> list[Case]:
    """Return the cases the actor may see, newest first, filtered."""
    query = select(Case).order_by(Case.id.desc()).limit(limit)
    query = query.where(scope_clause(actor, local_date(rt.clock.now()), Case.unit_id))
    if workflow:
        query = query.where(Case.workflow == workflow)
    if state:
        query = query.where(Case.state == state)
    if unit_id is not None:
        query = query.where(Case.unit_id == unit_id)
    return list(session.scalars(query))


def open_case(
    session: Session,
    rt: Runtime,
    actor: Actor,
    unit: Unit,
    workflow: str,
    data: Mapping[str, Any] | None = None,
    *,
    parent_case: Case | None = None,
) -> Case:
    """Start a case of the newest version of ``workflow`` for ``unit``, with its timers and history."""
    now = rt.clock.now()
    today = local_date(now)
    definition = rt.registry.latest(workflow)
    decision = decide(session, actor, "open", unit_id=unit.id, on=today)
    if decision is Decision.NOT_VISIBLE:
        raise NotFound("unit", unit.code)
    if decision is Decision.NOT_PERMITTED:
        raise NotPermitted(actor.username, f"open a {workflow} case")
    if not unit.valid_on(today):
        raise GuardFailed(None, "open", [FieldProblem("unit", f"{unit.code} does not exist on {today}")])
    clean, problems = clean_fields(definition.spec.start_fields, data, today)
    if problems:
        raise GuardFailed(None, "open", problems)
    case = Case(
        unit_id=unit.id,
        workflow=definition.name,
        workflow_version=definition.version,
        state=definition.spec.initial,
        version=1,
        data=clean,
        parent_case_id=parent_case.id if parent_case else None,
        opened_at=now,
        updated_at=now,
        history_head="",
        history_length=0,
    )
    session.add(case)
    session.flush()
    history.append(
        session,
        rt.history_key,
        case,
        at=now,
        kind="opened",
        actor=actor.username,
        to_state=case.state,
        data={"workflow": definition.name, "version": definition.version, "unit": unit.code, **clean},
    )
    _enter_state(session, rt, definition, case, now, actor)
    session.flush()
    return case


def advance(
    session: Session,
    rt: Runtime,
    actor: Actor,
    case_id: int,
    event: str,
    data: Mapping[str, Any] | None = None,
    *,
    expected_version: int | None = None,
) -> Advanced:
    """Fire ``event`` on a case as ``actor``; change everything or nothing (see the module doc)."""
    now = rt.clock.now()
    today = local_date(now)
    case = load_case_for_update(session, case_id)
    compiled = rt.registry.machine(case.workflow, case.workflow_version)
    definition = compiled.definition
    require(session, actor, "view", case, on=today)
    require(session, actor, "fire", case, on=today, definition=definition, event=event)
    if expected_version is not None and expected_version != case.version:
        raise StaleVersion(case.id, expected_version, case.version)
    event_spec = definition.spec.events.get(event)
    if event_spec is None or case.state not in definition.sources(event):
        raise InvalidTransition(case.id, case.state, event)
    clean, problems = clean_fields(event_spec.fields, data, today)
    if problems:
        raise GuardFailed(case.id, event, problems)
    recorded = {**clean, **event_spec.set}
    merged = {**case.data, **recorded}
    guard = definition.guards.get(event)
    if guard is not None and not guard.evaluate(merged):
        message = event_spec.guard_message.get(rt.language) if event_spec.guard_message else guard.source
        raise GuardFailed(case.id, event, [FieldProblem("guard", message)])
    to_state = compiled.fire(case.state, event, merged)
    if to_state is None:
        raise GuardFailed(case.id, event, [FieldProblem("branches", "no branch condition holds")])

    # Read first, then write. The case, history and timer rows are written at once with Core
    # statements (history.append, timers), so the flush at the end has only the rare obligation
    # and end-state changes left: in the profile, flushes cost as much as the rest of a transition.
    from_state = case.state
    to_fulfil = _obligations_fulfilled_by(session, definition, case, event)
    # The case row's new state, data and version go out in the same UPDATE as the chain head.
    history.append(
        session,
        rt.history_key,
        case,
        at=now,
        kind="transition",
        actor=actor.username,
        event=event,
        from_state=from_state,
        to_state=to_state,
        data=recorded,
        case_values={"state": to_state, "data": merged, "version": case.version + 1, "updated_at": now},
    )
    _fulfil_obligations(session, rt, definition, case, event, to_fulfil, recorded, now, actor)
    _open_event_obligations(session, rt, definition, case, event, recorded, now, actor)
    if to_state != from_state:
        timers.cancel_state_timers(session, case, from_state, now)
        _enter_state(session, rt, definition, case, now, actor)
    session.flush()
    return Advanced(case=case, event=event, from_state=from_state, to_state=to_state, recorded=recorded)


def _enter_state(
    session: Session, rt: Runtime, definition: Definition, case: Case, now: datetime, actor: Actor
) -> None:
    if case.state in definition.end_states():
        case.closed_at = now
        timers.close_timers(session, case, now)
        for ob in session.scalars(
            select(Obligation).where(Obligation.case_id == case.id, Obligation.status == "open")
        ):
            ob.status, ob.closed_at = "cancelled", now
        return
    timers.open_state_timers(session, rt.calendar, definition, case, now)
    for name, spec in definition.spec.obligations.items():
        if spec.opens.enter == case.state:
            already = session.scalar(
                select(Obligation.id).where(
                    Obligation.case_id == case.id, Obligation.name == name, Obligation.status == "open"
                )
            )
            if already is None:
                _open_obligation(session, rt, definition, case, name, local_date(now), now, actor, cycle=1)


def _open_event_obligations(
    session: Session,
    rt: Runtime,
    definition: Definition,
    case: Case,
    event: str,
    recorded: Mapping[str, Any],
    now: datetime,
    actor: Actor,
) -> None:
    for name, spec in definition.spec.obligations.items():
        if spec.opens.event == event:
            start = timers.resolve_start(spec.timer, dict(recorded), local_date(now), case.id)
            _open_obligation(session, rt, definition, case, name, start, now, actor, cycle=1)


def _open_obligation(
    session: Session,
    rt: Runtime,
    definition: Definition,
    case: Case,
    name: str,
    start: date,
    now: datetime,
    actor: Actor,
    *,
    cycle: int,
) -> Obligation:
    ob = Obligation(case_id=case.id, name=name, cycle=cycle, status="open", opened_at=now)
    session.add(ob)
    session.flush()
    timer = timers.open_timer(
        session, rt.calendar, definition, case, kind="obligation", name=name, obligation_id=ob.id, now=now, start=start
    )
    history.append(
        session,
        rt.history_key,
        case,
        at=now,
        kind="obligation_opened",
        actor=actor.username,
        data={"obligation": name, "cycle": cycle, "due": timer.due_date.isoformat()},
    )
    return ob


def _obligations_fulfilled_by(session: Session, definition: Definition, case: Case, event: str) -> list[tuple[str, Obligation]]:
    """Return the open obligations (oldest of each name) that ``event`` fulfils."""
    found = []
    for name, spec in definition.spec.obligations.items():
        if event in spec.fulfilled_by:
            ob = session.scalar(_OPEN_OBLIGATION, {"case_id": case.id, "name": name})
            if ob is not None:
                found.append((name, ob))
    return found


def _fulfil_obligations(
    session: Session,
    rt: Runtime,
    definition: Definition,
    case: Case,
    event: str,
    found: list[tuple[str, Obligation]],
    recorded: Mapping[str, Any],
    now: datetime,
    actor: Actor,
) -> None:
    for name, ob in found:
        spec = definition.spec.obligations[name]
        ob.status, ob.closed_at = "fulfilled", now
        timers.close_timers(session, case, now, obligation_id=ob.id)
        history.append(
            session,
            rt.history_key,
            case,
            at=now,
            kind="obligation_fulfilled",
            actor=actor.username,
            event=event,
            data={"obligation": name, "cycle": ob.cycle},
        )
        if spec.recurs:
            raw = recorded.get(spec.recur_from) if spec.recur_from else None
            start = date.fromisoformat(raw) if isinstance(raw, str) else local_date(now)
            _open_obligation(session, rt, definition, case, name, start, now, actor, cycle=ob.cycle + 1)


def pending_timers(session: Session, case: Case) -> list[Timer]:
    """Return the case's pending timers, soonest first."""
    return list(
        session.scalars(
            select(Timer).where(Timer.case_id == case.id, Timer.status == "pending").order_by(Timer.next_at)
        )
    )


def open_obligations(session: Session, case: Case) -> list[Obligation]:
    """Return the case's open obligations."""
    return list(
        session.scalars(
            select(Obligation).where(Obligation.case_id == case.id, Obligation.status == "open").order_by(Obligation.id)
        )
    )


__all__ = [
    "Advanced",
    "advance",
    "get_case",
    "list_cases",
    "load_case_for_update",
    "open_case",
    "open_obligations",
    "pending_timers",
]
