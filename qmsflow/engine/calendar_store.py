"""The stored working calendar: the installation's one calendar authority.

The overrides (extra days off, make-up working days) are rows of ``calendar_days``; ``meta`` keeps
the fingerprint of the calendar the pending timers are planned on (those rows and the ``holidays``
version, ``calendar.calendar_fingerprint``), that ``holidays`` version, and, while a replan is under
way, the fingerprint it applies. The calendar file is an import format: ``qmsflow init`` seeds the
rows from it on an empty table, and only ``--from-file`` (of ``init`` or ``qmsflow calendar replan``)
applies it afterwards (qmsflow/engine/replanning.py); otherwise the stored rows are the source.

A process plans and fires deadlines only on the stored calendar. One whose calendar differs (another
calendar file, another ``holidays`` version, a calendar applied since it started) is refused with
``CalendarMismatch``, logged once at ERROR: if it planned on its own calendar, two processes would
move the same deadlines back and forth, and a sweep would meet rows planned on another calendar than
its own (docs/architecture.md, "One calendar").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

from sqlalchemy import Connection, Table, delete, insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from . import adminlog
from .calendar import CalendarOverrides, WorkingCalendar
from .errors import CalendarMismatch
from .keys import Keyring
from .models import CalendarDay, Meta

if TYPE_CHECKING:
    from .permissions import Actor

log = logging.getLogger(__name__)

FINGERPRINT_KEY = "calendar_fingerprint"  # the calendar the pending timers are planned on
HOLIDAYS_KEY = "calendar_holidays"  # the holidays version it was applied with
REPLAN_KEY = "calendar_replan"  # the fingerprint a replan under way applies; empty when none
_KEYS = (FINGERPRINT_KEY, HOLIDAYS_KEY, REPLAN_KEY)
_META = cast(Table, Meta.__table__)
_DAYS = cast(Table, CalendarDay.__table__)
_READ = select(_META.c.key, _META.c.value).where(_META.c.key.in_(_KEYS))

# The mismatches this process has logged, so a scheduler that is refused every second says it once.
_reported: set[tuple[str, str | None, str | None]] = set()


@dataclass(frozen=True)
class StoredCalendar:
    """What the database says about the calendar the timers are planned on."""

    fingerprint: str | None  # None: no calendar stored yet
    holidays: str
    replanning: str | None  # the fingerprint a replan under way applies

    def refusal(self, calendar: WorkingCalendar, *, planning: bool) -> CalendarMismatch | None:
        """Return why a process on ``calendar`` may not plan (``planning``) or sweep now, or None.

        A replan under way stops every sweep; a process already on the calendar being applied may go on
        planning new deadlines, since they come out as the replan will leave every other one.
        """
        own = calendar.fingerprint()
        mismatch = CalendarMismatch(own, self.fingerprint, calendar.holidays_version, self.holidays, self.replanning)
        if self.replanning is not None:
            return None if planning and own == self.replanning else mismatch
        if self.fingerprint != own:
            return mismatch
        return None


def stored(connection: Session | Connection) -> StoredCalendar:
    """Read the stored calendar's fingerprint, ``holidays`` version and replan state (one statement)."""
    values = {key: value for key, value in connection.execute(_READ).tuples()}
    return StoredCalendar(
        fingerprint=values.get(FINGERPRINT_KEY) or None,
        holidays=values.get(HOLIDAYS_KEY) or "",
        replanning=values.get(REPLAN_KEY) or None,
    )


def check(connection: Session | Connection, calendar: WorkingCalendar, *, planning: bool) -> None:
    """Raise ``CalendarMismatch`` unless ``calendar`` is the stored one (see ``StoredCalendar.refusal``).

    The first refusal of each kind is logged at ERROR (a replan under way at INFO: it ends by itself).
    """
    refusal = stored(connection).refusal(calendar, planning=planning)
    if refusal is None:
        _reported.clear()
        return
    seen = (refusal.process, refusal.stored, refusal.replanning)
    if seen not in _reported:
        _reported.add(seen)
        log.log(logging.INFO if refusal.replanning else logging.ERROR, "calendar: %s", refusal)
    raise refusal


def load_overrides(session: Session) -> CalendarOverrides:
    """Return the stored overrides, from the ``calendar_days`` rows."""
    rows = session.execute(select(_DAYS.c.day, _DAYS.c.working, _DAYS.c.name).order_by(_DAYS.c.day)).tuples()
    return CalendarOverrides.from_rows([(day, working, name) for day, working, name in rows])


def lock(session: Session) -> StoredCalendar:
    """Lock the stored calendar's ``meta`` rows (made empty if missing) and return it.

    Whoever applies a calendar holds this lock until it commits, so two applying at once take turns.
    On a new database there is no row to lock yet, so empty ones are inserted first (or, if another
    process got there, waited for): without them both found nothing and one failed on a duplicate key.
    """
    insert_if_missing = (sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert)(_META)
    session.execute(insert_if_missing.on_conflict_do_nothing(index_elements=["key"]), [{"key": k, "value": ""} for k in _KEYS])
    values = {
        key: value
        for key, value in session.execute(select(_META.c.key, _META.c.value).where(_META.c.key.in_(_KEYS)).with_for_update()).tuples()
    }
    return StoredCalendar(values.get(FINGERPRINT_KEY) or None, values.get(HOLIDAYS_KEY) or "", values.get(REPLAN_KEY) or None)


def _set(session: Session, **values: str) -> None:
    for key, value in values.items():
        session.execute(_META.update().where(_META.c.key == key).values(value=value))


def write_days(session: Session, overrides: CalendarOverrides) -> None:
    """Replace the stored override rows with ``overrides`` (the caller holds ``lock``)."""
    session.execute(delete(_DAYS))
    rows = [{"day": day, "working": working, "name": name} for day, working, name in overrides.rows()]
    if rows:
        session.execute(insert(_DAYS), rows)


def store(session: Session, calendar: WorkingCalendar) -> None:
    """Store ``calendar`` as the one the pending timers are planned on, as is (no timer is re-planned).

    For a database with no pending timer: ``seed`` at ``qmsflow init``, a test's or a bench's fresh database.
    """
    lock(session)
    write_days(session, calendar.overrides)
    _set(session, **{FINGERPRINT_KEY: calendar.fingerprint(), HOLIDAYS_KEY: calendar.holidays_version, REPLAN_KEY: ""})


def seed(session: Session, calendar: WorkingCalendar, key: Keyring | bytes, actor: Actor, now: datetime) -> bool:
    """Store ``calendar`` if no calendar is stored yet (a new database); return whether it did. Logged."""
    if lock(session).fingerprint is not None:
        return False
    store(session, calendar)
    adminlog.record(
        session, key, actor, at=now, action="calendar.apply", object_kind="calendar", object_id="overrides",
        before={"fingerprint": None}, after={"fingerprint": calendar.fingerprint(), "deadlines_moved": 0},
    )
    return True


def begin_apply(session: Session, calendar: WorkingCalendar, key: Keyring | bytes, actor: Actor, now: datetime) -> StoredCalendar:
    """Store ``calendar``'s days and mark it as being applied; sweeps wait until ``finish_apply``. Logged.

    Returns the stored calendar as it was before.
    """
    before = lock(session)
    write_days(session, calendar.overrides)
    _set(session, **{REPLAN_KEY: calendar.fingerprint()})
    adminlog.record(
        session, key, actor, at=now, action="calendar.replan", object_kind="calendar", object_id="overrides",
        before={"fingerprint": before.fingerprint, "holidays": before.holidays or None},
        after={"fingerprint": calendar.fingerprint(), "holidays": calendar.holidays_version, "days": len(calendar.overrides.rows())},
    )
    return before


def finish_apply(
    session: Session, calendar: WorkingCalendar, key: Keyring | bytes, actor: Actor, now: datetime, *, moved: int
) -> bool:
    """Record that every pending timer is planned on ``calendar``: it becomes the stored one. Logged.

    Returns False, changing nothing, when another replan took over meanwhile (its own finish counts).
    """
    before = lock(session)
    if before.replanning != calendar.fingerprint():
        return False
    _set(session, **{FINGERPRINT_KEY: calendar.fingerprint(), HOLIDAYS_KEY: calendar.holidays_version, REPLAN_KEY: ""})
    adminlog.record(
        session, key, actor, at=now, action="calendar.apply", object_kind="calendar", object_id="overrides",
        before={"fingerprint": before.fingerprint}, after={"fingerprint": calendar.fingerprint(), "deadlines_moved": moved},
    )
    return True


__all__ = [
    "FINGERPRINT_KEY",
    "StoredCalendar",
    "begin_apply",
    "check",
    "finish_apply",
    "load_overrides",
    "lock",
    "seed",
    "store",
    "stored",
    "write_days",
]
