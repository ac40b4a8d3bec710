"""The case services: open a case, advance it by an event, read it. The caller owns the session.

``advance`` checks in a fixed order, so every caller sees the same error for the same request:
scope (NotFound), role (NotPermitted), expected version (StaleVersion), then state (InvalidTransition)
and data, conditions and the new deadlines' start dates (GuardFailed). Only when all pass does it
change anything: the case row, one history row, the state's timers and the obligations, all in the
caller's transaction, inside a savepoint of its own, so an error at any point leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import calendar_store, history, timers
from . import events as integration_events
from . import evidence as evidence_files
from .clock import local_date
from .definitions import Definition
from .errors import Conflict, FieldProblem, GuardFailed, InvalidTransition, NotFound, NotPermitted, StaleVersion
from .fields import clean_fields
from .models import Case, Obligation, Timer, Unit
from .permissions import Actor, Decision, decide, require, scope_clause
from .runtime import Runtime

COMMENT_KEY = "_comment"  # reserved key in a history row's data: the person's comment on the transition
MAX_COMMENT = 2000


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
_OPEN_WITH_KEY = select(Case.id).where(
    Case.unit_id == bindparam("unit_id"), Case.open_key == bindparam("open_key"), Case.closed_at.is_(None)
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


@contextmanager
def _all_or_nothing(session: Session) -> Iterator[None]:
    """Run a service in a savepoint; on any error roll it back and make every loaded object read its row.

    The session event (``models.expire_after_savepoint_rollback``) covers a savepoint a caller rolls
    back; this covers a failed flush too, after which SQLAlchemy has restored its own view of the
    objects it was writing: only once the savepoint is rolled back in the database may they be read.
    """
    try:
        with session.begin_nested():
            yield
    except BaseException:
        session.expire_all()
        raise


def open_case(
    session: Session,
    rt: Runtime,
    actor: Actor,
    unit: Unit,
    workflow: str,
    data: Mapping[str, Any] | None = None,
    *,
    parent_case: Case | None = None,
    now: datetime | None = None,
    evidence: Sequence[int] = (),
) -> Case:
    """Start a case of the newest version of ``workflow`` for ``unit``, with its timers and history.

    All or nothing, in its own savepoint (see ``advance``). ``now`` is the instant of the whole
    operation (default: the runtime clock). A second open case where the definition's
    ``open_cases`` allows one is a ``Conflict``, checked here and enforced by a unique index.
    ``evidence``: ids of the actor's staged uploads to attach (qmsflow/engine/evidence.py).
    """
    now = now or rt.clock.now()
    try:
        with _all_or_nothing(session):
            return _open_case(session, rt, actor, unit, workflow, data, parent_case, now, evidence)
    except IntegrityError as exc:
        if "open_key" not in str(exc.orig):
            raise
        # another request opened the same case between our check and our insert
        raise Conflict(f"unit {unit.code} already has an open {workflow} case", {"unit_id": unit.id}) from None


def _open_case(
    session: Session,
    rt: Runtime,
    actor: Actor,
    unit: Unit,
    workflow: str,
    data: Mapping[str, Any] | None,
    parent_case: Case | None,
    now: datetime,
    evidence: Sequence[int],
) -> Case:
    today = local_date(now)
    definition = rt.registry.latest(workflow)
    decision = decide(session, actor, "open", unit_id=unit.id, on=today)
    if decision is Decision.NOT_VISIBLE:
        raise NotFound("unit", unit.code)
    if decision is Decision.NOT_PERMITTED:
        raise NotPermitted(actor.username, f"open a {workflow} case")
    if not unit.valid_on(today):
        raise GuardFailed(None, "open", [FieldProblem("unit", "unit_not_on", {"unit": unit.code, "day": today})])
    clean, problems = clean_fields(definition.spec.start_fields, data, today)
    if problems:
        raise GuardFailed(None, "open", problems)
    starts = timers.resolve_starts(definition, definition.spec.initial, None, clean, clean, today, None)
    if starts:  # deadlines are planned only on the stored calendar (qmsflow/engine/calendar_store.py)
        calendar_store.check(session, rt.calendar, planning=True)
    open_key = definition.open_key(clean)
    if open_key is not None:
        existing = session.scalar(_OPEN_WITH_KEY, {"unit_id": unit.id, "open_key": open_key})
        if existing is not None:
            raise Conflict(
                f"unit {unit.code} already has an open {workflow} case ({existing}): close it before opening another",
                {"unit_id": unit.id, "case_id": existing},
            )
    # evidence: checked before anything is written, attached once the case has an id
    claimed = evidence_files.check_claim(session, actor, unit.id, evidence, now)
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
        open_key=open_key,
    )
    session.add(case)
    session.flush()
    attached = evidence_files.attach(session, case, claimed, now)
    history.append(
        session,
        rt.history_key,
        case,
        at=now,
        kind="opened",
        actor=actor.username,
        to_state=case.state,
        data={
            "workflow": definition.name, "version": definition.version, "unit": unit.code, **clean,
            **({evidence_files.EVIDENCE_KEY: attached} if attached else {}),
        },
    )
    _enter_state(session, rt, definition, case, now, actor, starts)
    # Integrators' event rows (qmsflow/engine/events.py): one INSERT, in this savepoint.
    integration_events.write(session, integration_events.transition_rows(
        case, now, actor=actor.username, event=None, from_state=None, to_state=case.state, ended=False, attached=attached,
    ))
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
    now: datetime | None = None,
    evidence: Sequence[int] = (),
    comment: str | None = None,
) -> Advanced:
    """Fire ``event`` on a case as ``actor``; change everything or nothing (see the module doc).

    It runs in its own savepoint: whatever it raises, from a refusal to a failed statement, no row
    it wrote remains and every loaded object reads its row again (``models.expire_after_savepoint_rollback``),
    so a caller may go on, and even commit, after catching the error. ``now`` is the instant of the
    whole operation (default: the runtime clock): the history row, the version's ``updated_at`` and
    the new state's deadlines all use it; the sweep passes its own. ``evidence``: ids of the actor's
    staged uploads to attach (qmsflow/engine/evidence.py); the history row records them under
    ``_evidence``, which is not merged into the case's data. ``comment``: the person's own words
    about it (at most ``MAX_COMMENT`` characters), recorded in the history row under ``_comment``,
    so the chain covers it; it is not case data either.
    """
    now = now or rt.clock.now()
    with _all_or_nothing(session):
        return _advance(session, rt, actor, case_id, event, data, expected_version, now, evidence, comment)


def _advance(
    session: Session,
    rt: Runtime,
    actor: Actor,
    case_id: int,
    event: str,
    data: Mapping[str, Any] | None,
    expected_version: int | None,
    now: datetime,
    evidence: Sequence[int],
    comment: str | None,
) -> Advanced:
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
    note = _check_comment(comment, problems)
    if problems:
        raise GuardFailed(case.id, event, problems)
    recorded = {**clean, **event_spec.set}
    merged = {**case.data, **recorded}
    guard = definition.guards.get(event)
    outcome = guard.outcome(merged) if guard is not None else None
    if guard is not None and outcome is not None and not outcome.holds:
        reason = event_spec.guard_message.model_dump() if event_spec.guard_message else guard.source
        undecided = [FieldProblem(name, "undecided") for name in outcome.missing]
        raise GuardFailed(case.id, event, [FieldProblem("guard", "guard", {"event": event, "reason": reason}), *undecided])
    to_state = compiled.fire(case.state, event, merged)
    if to_state is None:
        raise GuardFailed(case.id, event, [FieldProblem("branches", "no_branch")])
    from_state = case.state
    entering = to_state if to_state != from_state else None
    # The last check: every deadline this transition opens can be planned (a GuardFailed of this event).
    starts = timers.resolve_starts(definition, entering, event, merged, recorded, today, case.id)
    # Evidence, after every check and before the writes: refusing here still changes nothing.
    attached = evidence_files.claim(session, actor, case, evidence, now)
    logged = {**recorded, evidence_files.EVIDENCE_KEY: attached} if attached else recorded
    if note:
        logged = {**logged, COMMENT_KEY: note}

    # Read first, then write. The case, history and timer rows are written at once with Core
    # statements (history.append, timers), so the flush at the end has only the rare obligation
    # and end-state changes left: in the profile, flushes cost as much as the rest of a transition.
    to_fulfil = _obligations_fulfilled_by(session, definition, case, event)
    if starts or to_fulfil:  # it plans deadlines (a fulfilled obligation may recur): on the stored calendar only
        calendar_store.check(session, rt.calendar, planning=True)
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
        data=logged,
        case_values={"state": to_state, "data": merged, "version": case.version + 1, "updated_at": now},
    )
    # Integrators' event rows (qmsflow/engine/events.py): one INSERT, in this savepoint.
    integration_events.write(session, integration_events.transition_rows(
        case, now, actor=actor.username, event=event, from_state=from_state, to_state=to_state,
        ended=entering is not None and to_state in definition.end_states(), attached=attached,
    ))
    _fulfil_obligations(session, rt, definition, case, event, to_fulfil, recorded, now, actor)
    _open_event_obligations(session, rt, definition, case, event, starts, now, actor)
    if entering is not None:
        timers.cancel_state_timers(session, case, from_state, now)
        _enter_state(session, rt, definition, case, now, actor, starts)
    session.flush()
    return Advanced(case=case, event=event, from_state=from_state, to_state=to_state, recorded=recorded)


def _check_comment(comment: object, problems: list[FieldProblem]) -> str | None:
    """Return the trimmed comment (None when empty), adding a problem when it is not short text."""
    if comment is None:
        return None
    if not isinstance(comment, str):
        problems.append(FieldProblem("comment", "not_text"))
        return None
    text = comment.strip()
    if len(text) > MAX_COMMENT:
        problems.append(FieldProblem("comment", "max_length", {"n": MAX_COMMENT}))
    return text or None


def _enter_state(
    session: Session, rt: Runtime, definition: Definition, case: Case, now: datetime, actor: Actor, starts: Mapping[str, date]
) -> None:
    if case.state in definition.end_states():
        case.closed_at = now
        timers.close_timers(session, case, now)
        for ob in session.scalars(
            select(Obligation).where(Obligation.case_id == case.id, Obligation.status == "open")
        ):
            ob.status, ob.closed_at = "cancelled", now
        return
    timers.open_state_timers(session, rt.calendar, definition, case, now, starts)
    for name, spec in definition.spec.obligations.items():
        if spec.opens.enter == case.state:
            already = session.scalar(
                select(Obligation.id).where(
                    Obligation.case_id == case.id, Obligation.name == name, Obligation.status == "open"
                )
            )
            if already is None:
                # an obligation opened on entering a state counts from its own ``start`` (usually
                # ``on: open``, the day of entry), resolved with the state's timers before any write
                _open_obligation(session, rt, definition, case, name, starts[f"obligation:{name}"], now, actor, cycle=1)


def _open_event_obligations(
    session: Session,
    rt: Runtime,
    definition: Definition,
    case: Case,
    event: str,
    starts: Mapping[str, date],
    now: datetime,
    actor: Actor,
) -> None:
    for name, spec in definition.spec.obligations.items():
        if spec.opens.event == event:
            _open_obligation(session, rt, definition, case, name, starts[f"obligation:{name}"], now, actor, cycle=1)


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


# (id of the definition) -> (the definition, kept so its id is not reused; obligation -> states it may be open in)
_OPEN_IN: dict[int, tuple[Definition, dict[str, frozenset[str]]]] = {}


def may_be_open_in(definition: Definition) -> dict[str, frozenset[str]]:
    """Return, per obligation, the states in which a case of ``definition`` can hold it open.

    Invariant (the lookup shortcut rests on it): an obligation row is created only by
    ``_open_obligation``, on entering its ``opens.enter`` state, on firing its ``opens.event`` or as
    the next cycle of one fulfilled (in a state where it was open), and a case's state changes only
    along the definition's transitions. So an obligation can be open only in states reachable from
    where it opens. tests/engine/test_transition_statements.py breaks when a module other than this
    one creates obligations or when a definition loops back to a state the shortcut skips.
    """
    cached = _OPEN_IN.get(id(definition))
    if cached is not None and cached[0] is definition:
        return cached[1]
    following: dict[str, set[str]] = {}
    for t in definition.transitions:
        following.setdefault(t.source, set()).add(t.dest or t.source)
    result: dict[str, frozenset[str]] = {}
    for name, spec in definition.spec.obligations.items():
        start = {spec.opens.enter} if spec.opens.enter else set()
        if spec.opens.event:
            start |= {t.dest or t.source for t in definition.transitions if t.event == spec.opens.event}
        seen, todo = set(start), list(start)
        while todo:
            for nxt in following.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        result[name] = frozenset(seen)
    _OPEN_IN[id(definition)] = (definition, result)
    return result


def _obligations_fulfilled_by(session: Session, definition: Definition, case: Case, event: str) -> list[tuple[str, Obligation]]:
    """Return the open obligations (oldest of each name) that ``event`` fulfils.

    Looked up only where one can be open (``may_be_open_in``): a yearly audit recorded while the
    system is still being applied cannot fulfil the yearly obligation opened on maintaining it.
    """
    found = []
    open_in = may_be_open_in(definition)
    for name, spec in definition.spec.obligations.items():
        if event in spec.fulfilled_by and case.state in open_in[name]:
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
    "COMMENT_KEY",
    "MAX_COMMENT",
    "Advanced",
    "advance",
    "get_case",
    "list_cases",
    "load_case_for_update",
    "may_be_open_in",
    "open_case",
    "open_obligations",
    "pending_timers",
]
