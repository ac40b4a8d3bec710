"""Applying a changed working calendar to the deadlines already planned.

Applying a calendar is an explicit act (``qmsflow init``, ``qmsflow calendar replan``), recorded in
the admin log with who and when (qmsflow/engine/calendar_store.py). It goes in three steps, each
its own transaction: the new days are stored and marked as being applied, which stops every sweep
(they would fire on a calendar half the timers are not yet planned on); the pending timers are
re-planned in bounded batches of cases, each committed, so no transaction grows with the number of
timers and on SQLite no user waits behind the whole replan; and, after the last batch, the new
fingerprint becomes the stored one. A replan cut short leaves the mark; run again, it goes over the
timers again, and those already re-planned no longer move.

Each batch takes its locks in the order a transition and the sweep take them: the case rows first,
then their timers, both read afresh after the lock (``populate_existing``) and nothing flushed before
(``no_autoflush``), so a sweep or a user that committed a step meanwhile is re-planned from that step
instead of being overwritten, and the three never deadlock. A batch costs the same few statements
whatever its size: one read each for cases and timers, one executemany each for the timers, the
history rows and the chain heads. The loaded timers are kept in step with what is written
(``models.keep_in_step``); a rolled-back batch is a transaction of its own, whose objects are gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from . import calendar_store, history
from . import events as integration_events
from .db import Database
from .errors import ConfigurationError
from .models import Case, Timer, keep_in_step
from .permissions import SYSTEM, Actor
from .runtime import Runtime
from .timers import replanned

FINGERPRINT_KEY = calendar_store.FINGERPRINT_KEY
DEFAULT_BATCH_SIZE = 500  # cases per replan transaction; the setting is [calendar] replan_batch_size
_TIMERS = cast(Table, Timer.__table__)
_UPDATE_TIMER = update(_TIMERS).where(_TIMERS.c.id == bindparam("timer_id_"))


@dataclass(frozen=True)
class MovedDeadline:
    """One pending timer whose plan the new calendar moved."""

    timer_id: int
    case_id: int
    name: str
    old_due: date
    new_due: date


@dataclass
class ReplanReport:
    """What one replan did: the deadlines it moved, in how many batches, and whether it finished."""

    moved: list[MovedDeadline] = field(default_factory=list)
    batches: int = 0
    applied: bool = False  # False: another replan took over before this one finished


def stored_fingerprint(session: Session) -> str | None:
    """Return the fingerprint of the calendar the stored timers were planned with (None before the first)."""
    return calendar_store.stored(session).fingerprint


def replan_calendar(
    db: Database,
    rt: Runtime,
    *,
    actor: Actor,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[list[MovedDeadline]], None] | None = None,
) -> ReplanReport:
    """Apply the runtime's calendar: store it, re-plan every pending timer in committed batches, then mark it applied.

    ``on_batch`` is called after each batch commits with what it moved (progress for the operator).
    """
    if batch_size < 1:
        raise ConfigurationError(f"a replan batch holds at least one case, not {batch_size} (scheduler.replan_batch_size)")
    now = rt.clock.now()
    report = ReplanReport()
    with db.write() as session:
        calendar_store.begin_apply(session, rt.calendar, rt.history_key, actor, now)
    after = 0
    while True:
        with db.write() as session:
            moved, last = replan_batch(session, rt, after=after, limit=batch_size, now=now, lock=not db.is_sqlite)
        report.batches += 1
        report.moved.extend(moved)
        if on_batch is not None:
            on_batch(moved)
        if last is None:
            break
        after = last
    with db.write() as session:
        report.applied = calendar_store.finish_apply(session, rt.calendar, rt.history_key, actor, now, moved=len(report.moved))
    return report


def apply_calendar(session: Session, rt: Runtime, *, actor: Actor = SYSTEM, batch_size: int = DEFAULT_BATCH_SIZE) -> list[MovedDeadline]:
    """Apply the runtime's calendar in the caller's one transaction (a new or small database); return what moved.

    The same steps as ``replan_calendar``, uncommitted: prefer that one where other users work.
    """
    now = rt.clock.now()
    calendar_store.begin_apply(session, rt.calendar, rt.history_key, actor, now)
    lock = session.get_bind().dialect.name != "sqlite"
    out: list[MovedDeadline] = []
    after = 0
    while True:
        moved, last = replan_batch(session, rt, after=after, limit=batch_size, now=now, lock=lock)
        out.extend(moved)
        if last is None:
            break
        after = last
    calendar_store.finish_apply(session, rt.calendar, rt.history_key, actor, now, moved=len(out))
    return out


def replan_batch(
    session: Session, rt: Runtime, *, after: int, limit: int, now: datetime, lock: bool
) -> tuple[list[MovedDeadline], int | None]:
    """Re-plan the pending timers of the next ``limit`` cases with an id above ``after``.

    Returns what moved and the last case id handled, or None when no case is left after this batch.
    """
    with session.no_autoflush:
        cases_query = (
            select(Case)
            .where(Case.id > after, Case.id.in_(select(Timer.case_id).where(Timer.status == "pending")))
            .order_by(Case.id)
            .limit(limit)
            .execution_options(populate_existing=True)
        )
        if lock:
            cases_query = cases_query.with_for_update(of=Case)
        cases = {case.id: case for case in session.scalars(cases_query)}
        if not cases:
            return [], None
        timers_query = (
            select(Timer)
            .where(Timer.case_id.in_(list(cases)), Timer.status == "pending")
            .order_by(Timer.case_id, Timer.id)
            .execution_options(populate_existing=True)
        )
        if lock:
            timers_query = timers_query.with_for_update()
        writes: list[dict[str, Any]] = []
        notes = history.HistoryBatch()
        moved: list[MovedDeadline] = []
        changes: list[dict[str, Any]] = []  # integrators' event rows (engine/events.py)
        for timer in session.scalars(timers_query):
            case = cases[timer.case_id]
            values = replanned(timer, rt.registry.get(case.workflow, case.workflow_version), rt.calendar)
            if values is None:
                continue
            old = timer.due_date
            keep_in_step(timer, values)
            writes.append({"timer_id_": timer.id, **values})
            notes.append(
                rt.history_key, case, at=now, kind="deadline_moved", actor=SYSTEM.username,
                data={"timer": timer.name, "from": old.isoformat(), "to": values["due_date"].isoformat(), "reason": "calendar"},
            )
            moved.append(MovedDeadline(timer.id, timer.case_id, timer.name, old, values["due_date"]))
            changes.append(integration_events.row(case, integration_events.DEADLINE_MOVED, now, {
                "timer": timer.name, "from": old.isoformat(), "to": values["due_date"].isoformat(), "reason": "calendar",
            }))
        if writes:
            session.execute(_UPDATE_TIMER, writes)
            notes.write(session)
            integration_events.write(session, changes)
    return moved, max(cases) if len(cases) == limit else None


__all__ = ["MovedDeadline", "ReplanReport", "apply_calendar", "replan_batch", "replan_calendar", "stored_fingerprint"]
