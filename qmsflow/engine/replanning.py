"""Applying a changed working calendar to the deadlines already planned."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from . import adminlog, history
from .models import Case, Meta, Timer
from .permissions import SYSTEM, Actor
from .runtime import Runtime
from .timers import replan

FINGERPRINT_KEY = "calendar_fingerprint"
_META = cast(Table, Meta.__table__)


@dataclass(frozen=True)
class MovedDeadline:
    """One pending timer whose due date the new calendar moved."""

    timer_id: int
    case_id: int
    name: str
    old_due: date
    new_due: date


def stored_fingerprint(session: Session) -> str | None:
    """Return the fingerprint of the overrides the stored timers were planned with (None before the first)."""
    return session.scalar(select(Meta.value).where(Meta.key == FINGERPRINT_KEY)) or None


def apply_calendar(session: Session, rt: Runtime, *, actor: Actor) -> list[MovedDeadline]:
    """Re-plan every pending timer on the runtime's calendar, note each move in its case history; logged."""
    pending = select(Timer.case_id).where(Timer.status == "pending")
    keys = {
        cid: (name, version)
        for cid, name, version in session.execute(
            select(Case.id, Case.workflow, Case.workflow_version).where(Case.id.in_(pending))
        )
    }
    moved: list[tuple[Timer, date, date]] = replan(session, rt.calendar, lambda case_id: rt.registry.get(*keys[case_id]))
    now = rt.clock.now()
    out = []
    for timer, old, new in moved:
        case = session.scalar(select(Case).where(Case.id == timer.case_id).with_for_update())
        assert case is not None
        history.append(
            session, rt.history_key, case, at=now, kind="deadline_moved", actor="system",
            data={"timer": timer.name, "from": old.isoformat(), "to": new.isoformat(), "reason": "calendar"},
        )
        out.append(MovedDeadline(timer.id, timer.case_id, timer.name, old, new))
    meta = session.get(Meta, FINGERPRINT_KEY)
    fingerprint = rt.calendar.overrides.fingerprint()
    previous = meta.value if meta is not None and meta.value else None
    if meta is None:
        session.add(Meta(key=FINGERPRINT_KEY, value=fingerprint))
    else:
        meta.value = fingerprint
    session.flush()
    adminlog.record(
        session, rt.history_key, actor, at=now, action="calendar.apply", object_kind="calendar", object_id="overrides",
        before={"fingerprint": previous}, after={"fingerprint": fingerprint, "deadlines_moved": len(out)},
    )
    return out


def apply_calendar_if_changed(session: Session, rt: Runtime, *, actor: Actor = SYSTEM) -> list[MovedDeadline] | None:
    """Re-plan only if the overrides differ from those the timers were planned with; None if they do not.

    The stored fingerprint is locked first, so schedulers starting together re-plan once. On a new
    database there is no row to lock yet, so an empty one is inserted first (or, if another process
    got there, waited for): without it each of them found nothing, re-planned, and all but one then
    failed on the duplicate key.
    """
    insert_if_missing = (sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert)(_META)
    session.execute(insert_if_missing.values(key=FINGERPRINT_KEY, value="").on_conflict_do_nothing(index_elements=["key"]))
    meta = session.scalar(select(Meta).where(Meta.key == FINGERPRINT_KEY).with_for_update())
    if meta is not None and meta.value == rt.calendar.overrides.fingerprint():
        return None
    return apply_calendar(session, rt, actor=actor)


__all__ = ["MovedDeadline", "apply_calendar", "apply_calendar_if_changed", "stored_fingerprint"]
