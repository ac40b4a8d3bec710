"""Events for integrators: one row per occurrence, written in the transaction of what it reports.

A case opened or advanced, closed, superseded or withdrawn, a reminder or an escalation fired, a
deadline moved by a calendar replan, evidence attached: each writer stages its event rows and
writes them with one Core INSERT (an executemany when there are several), in the same transaction
as the history row, so an event exists exactly when what it reports was committed, and a rolled
back transition leaves none. The rows are not attached to the session: nothing loaded has to be
kept in step, and a savepoint rolled back takes them with it.

Two readers: the webhook dispatcher (qmsflow/engine/webhooks.py), which fans undispatched rows out
to subscriptions, and the cursor feed ``events_after``, for systems that cannot accept inbound
HTTP. Both show an event only to an actor whose scope holds the case's unit.

Commit order: ids are handed out when rows are inserted, not when they are committed, so on
PostgreSQL a transaction still open may hold an id below one already committed. The feed would
then step over it. Each row carries its transaction's id (``txid``, a server default) and the feed
shows only rows whose transaction is older than every transaction still running
(``pg_snapshot_xmin``): a row is shown once nothing before it can still appear. SQLite has one
writer at a time, so ids commit in order there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Table, Text, func, insert, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from .clock import local_date
from .cursors import check_page_size
from .errors import FieldProblem, ValidationFailed
from .models import Case, Event
from .permissions import Actor, scope_clause
from .runtime import Runtime

CASE_OPENED = "case.opened"
CASE_ADVANCED = "case.advanced"
CASE_CLOSED = "case.closed"
CASE_SUPERSEDED = "case.superseded"
CASE_WITHDRAWN = "case.withdrawn"
REMINDER_FIRED = "reminder.fired"
ESCALATION_FIRED = "escalation.fired"
DEADLINE_MOVED = "deadline.moved"
EVIDENCE_ATTACHED = "evidence.attached"

TYPES = (
    CASE_OPENED, CASE_ADVANCED, CASE_CLOSED, CASE_SUPERSEDED, CASE_WITHDRAWN,
    REMINDER_FIRED, ESCALATION_FIRED, DEADLINE_MOVED, EVIDENCE_ATTACHED,
)

# An end state with a name of its own reports as its own type; any other end state is "closed".
_ENDINGS = {"superseded": CASE_SUPERSEDED, "withdrawn": CASE_WITHDRAWN}

_INSERT = insert(cast(Table, Event.__table__))


def row(case: Case, type_: str, at: datetime, data: Mapping[str, Any]) -> dict[str, Any]:
    """Return one event row about ``case`` (to pass to ``write``)."""
    return {"type": type_, "at": at, "case_id": case.id, "unit_id": case.unit_id, "data": dict(data), "dispatched_at": None}


def transition_rows(
    case: Case,
    at: datetime,
    *,
    actor: str,
    event: str | None,
    from_state: str | None,
    to_state: str,
    ended: bool,
    attached: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Return the rows an opening (``event`` None) or a transition writes: the occurrence, its ending, its evidence."""
    base = {"actor": actor, "version": case.version, "state": to_state}
    if event is None:
        rows = [row(case, CASE_OPENED, at, {**base, "workflow": case.workflow})]
    else:
        rows = [row(case, CASE_ADVANCED, at, {**base, "event": event, "from_state": from_state, "to_state": to_state})]
    if ended:
        rows.append(row(case, _ENDINGS.get(to_state, CASE_CLOSED), at, {**base, "event": event}))
    if attached:
        rows.append(row(case, EVIDENCE_ATTACHED, at, {**base, "event": event, "attachment_ids": [a["attachment_id"] for a in attached]}))
    return rows


def write(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert the staged event rows with one statement (nothing when there are none)."""
    if rows:
        session.execute(_INSERT, list(rows))


@dataclass(frozen=True)
class FeedEvent:
    """One event as the feed shows it."""

    id: int
    type: str
    at: datetime
    case_id: int
    unit_id: int
    data: dict[str, Any]


def settled(session: Session) -> Any:
    """SQL: the event's transaction can no longer be preceded by one still open (PostgreSQL; true on SQLite)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    horizon = sql_cast(sql_cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), Text), BigInteger)
    return Event.txid < horizon


def events_after(session: Session, rt: Runtime, actor: Actor, after: object = 0, limit: object = 100) -> list[FeedEvent]:
    """Return up to ``limit`` events with an id above ``after`` whose case the actor sees, oldest first.

    ``after`` is the id of the last event the reader has (0 for the beginning); resume with the
    last id returned. An event is shown once no transaction still open can commit one before it.
    """
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ValidationFailed([FieldProblem("after", "integer_range", {"low": 0, "high": 2**63 - 1})])
    size = check_page_size(limit)
    query = (
        select(Event)
        .join(Case, Case.id == Event.case_id)
        .where(Event.id > after, scope_clause(actor, local_date(rt.clock.now()), Case.unit_id))
        .order_by(Event.id)
        .limit(size)
    )
    horizon = settled(session)
    if horizon is not None:
        query = query.where(horizon)
    return [FeedEvent(e.id, e.type, e.at, e.case_id, e.unit_id, dict(e.data)) for e in session.scalars(query)]


__all__ = [
    "CASE_ADVANCED",
    "CASE_CLOSED",
    "CASE_OPENED",
    "CASE_SUPERSEDED",
    "CASE_WITHDRAWN",
    "DEADLINE_MOVED",
    "ESCALATION_FIRED",
    "EVIDENCE_ATTACHED",
    "REMINDER_FIRED",
    "TYPES",
    "FeedEvent",
    "events_after",
    "row",
    "settled",
    "transition_rows",
    "write",
]
