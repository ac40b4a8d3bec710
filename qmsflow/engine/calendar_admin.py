"""Editing the stored calendar overrides from the administrator's page: list, preview, apply; and following.

An override (a day off or a make-up working day) is a row of ``calendar_days``. A change is first
previewed: every pending deadline the changed calendar would move, old and new due date, per case,
computed with the same ``timers.replanned`` the replan uses, changing nothing. Applied, it goes
through ``replanning.replan_calendar`` (rows stored, timers re-planned in committed batches, each
moved deadline noted in its case's history, the calendar marked applied), refused when the stored
calendar changed since the preview. Never a file.

Running processes hold a ``WorkingCalendar`` in their ``Runtime``. ``CalendarFollower`` lets a
process that was on the stored calendar follow it when an administrator changes it: it reloads the
calendar from the stored rows when the stored fingerprint moves on from the one it agreed with (and
its ``holidays`` version is the stored one). A process that never agreed (started with another
calendar file) does not follow and stays refused (calendar_store.check), as before: its operator
must mean something else. docs/operations.md, "Changing the calendar", says how each process follows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import adminlog, calendar_store
from .calendar import CalendarOverrides, WorkingCalendar
from .db import Database
from .errors import Conflict, FieldProblem, ValidationFailed
from .models import Case, Timer, Unit
from .permissions import Actor, AdminArea, require_admin
from .replanning import ReplanReport, replan_calendar
from .runtime import Runtime
from .timers import replanned, timer_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OverrideChange:
    """Add (``working``: a make-up working day, else a day off) or remove the override of ``day``."""

    action: str  # add | remove
    day: date
    working: bool = False
    name: str = ""


@dataclass(frozen=True)
class MovedDeadlinePreview:
    """One pending deadline the change would move."""

    case_id: int
    unit_id: int
    unit_name: str
    label: str
    old_due: date
    new_due: date


@dataclass(frozen=True)
class CalendarPreview:
    """What a change would do, and the stored calendar it was computed against."""

    change: OverrideChange
    stored_fingerprint: str | None
    moves: tuple[MovedDeadlinePreview, ...]


def year_overrides(session: Session, actor: Actor, year: int) -> list[tuple[date, bool, str]]:
    """The stored overrides of ``year``: (day, working, name), by day."""
    require_admin(actor, AdminArea.CALENDAR)
    return [row for row in calendar_store.load_overrides(session).rows() if row[0].year == year]


def _changed(session: Session, change: OverrideChange) -> CalendarOverrides:
    current = calendar_store.load_overrides(session)
    off, work = dict(current.days_off), dict(current.working_days)
    if change.action == "remove":
        if change.day not in off and change.day not in work:
            raise ValidationFailed([FieldProblem("day", "no_override", {"day": change.day})])
        off.pop(change.day, None)
        work.pop(change.day, None)
    elif change.action == "add":
        if change.day in off or change.day in work:
            raise ValidationFailed([FieldProblem("day", "override_exists", {"day": change.day})])
        if len(change.name) > 200:
            raise ValidationFailed([FieldProblem("name", "max_length", {"n": 200})])
        (work if change.working else off)[change.day] = change.name
    else:
        raise ValidationFailed([FieldProblem("action", "one_of", {"choices": ["add", "remove"]})])
    return CalendarOverrides(days_off=off, working_days=work)


def preview(session: Session, rt: Runtime, actor: Actor, change: OverrideChange, *, language: str | None = None) -> CalendarPreview:
    """Every pending deadline ``change`` would move (old and new due date), changing nothing."""
    require_admin(actor, AdminArea.CALENDAR)
    language = language or rt.language
    calendar = WorkingCalendar(_changed(session, change))
    stored = calendar_store.stored(session)
    moves = []
    rows = session.execute(
        select(Timer, Case.workflow, Case.workflow_version, Case.unit_id, Unit.name)
        .join(Case, Case.id == Timer.case_id).join(Unit, Unit.id == Case.unit_id)
        .where(Timer.status == "pending").order_by(Timer.case_id, Timer.id)
    ).tuples()
    for timer, workflow, version, unit_id, unit_name in rows:
        definition = rt.registry.get(workflow, version)
        values = replanned(timer, definition, calendar)
        if values is None or values["due_date"] == timer.due_date:
            continue
        moves.append(MovedDeadlinePreview(timer.case_id, unit_id, unit_name, definition.timer_spec(timer_key(timer)).label.get(language),
                                          timer.due_date, values["due_date"]))
    return CalendarPreview(change, stored.fingerprint, tuple(moves))


def apply(db: Database, rt: Runtime, actor: Actor, change: OverrideChange, *, expected_fingerprint: str | None) -> ReplanReport:
    """Store ``change`` and re-plan through the engine's replan; the runtime then runs on the new calendar. Logged.

    Refused (Conflict, nothing changed) when the stored calendar is no longer the one the preview read.
    """
    require_admin(actor, AdminArea.CALENDAR)
    with db.read() as session:
        stored = calendar_store.stored(session)
        if stored.replanning is not None or stored.fingerprint != expected_fingerprint:
            raise Conflict("the calendar changed since the preview: look at the preview again", {"code": "calendar_changed"})
        calendar = WorkingCalendar(_changed(session, change))
    report = replan_calendar(db, replace(rt, calendar=calendar), actor=actor)
    rt.calendar = calendar  # this process follows at once; the others through CalendarFollower
    with db.write() as session:
        adminlog.record(
            session, rt.history_key, actor, at=rt.clock.now(), action=f"calendar.override.{change.action}", object_kind="calendar_day",
            object_id=change.day.isoformat(), before=None if change.action == "add" else {"day": change.day.isoformat()},
            after={"day": change.day.isoformat(), "working": change.working, "name": change.name, "deadlines_moved": len(report.moved)}
            if change.action == "add" else {"deadlines_moved": len(report.moved)},
        )
    return report


class CalendarFollower:
    """Keeps a process's runtime on the stored calendar once it agreed with it (see the module's docstring)."""

    def __init__(self, rt: Runtime, *, every: timedelta = timedelta(seconds=10)) -> None:
        self.rt = rt
        self.every = every
        self.agreed: str | None = None
        self.checked_at: datetime | None = None

    def due(self, now: datetime) -> bool:
        """Whether ``sync`` should read the stored fingerprint again (at most once per ``every``)."""
        return self.checked_at is None or now - self.checked_at >= self.every or now < self.checked_at

    def sync(self, session: Session) -> bool:
        """Read the stored fingerprint (one statement); reload from the rows if it moved on. Returns whether it reloaded."""
        self.checked_at = self.rt.clock.now()
        stored = calendar_store.stored(session)
        target = stored.replanning or stored.fingerprint
        own = self.rt.calendar.fingerprint()
        if target is None or target == own:
            self.agreed = own
            return False
        if self.agreed != own or stored.holidays != self.rt.calendar.holidays_version:
            return False  # never on the stored calendar (another file), or another holidays: refused as before
        calendar = WorkingCalendar(calendar_store.load_overrides(session))
        if calendar.fingerprint() != target:
            return False
        self.rt.calendar = calendar
        self.agreed = target
        log.info("calendar: now on the stored calendar %s", target)
        return True


__all__ = ["CalendarFollower", "CalendarPreview", "MovedDeadlinePreview", "OverrideChange", "apply", "preview", "year_overrides"]
