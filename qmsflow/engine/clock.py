"""The one source of "now": every module asks a Clock, tests move it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


class Clock(Protocol):
    """Anything that tells the current instant as an aware UTC datetime."""

    def now(self) -> datetime:
        """Return the current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The wall clock. Only the CLI and the app factory create one."""

    def now(self) -> datetime:
        """Return the wall-clock instant in UTC."""
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until moved; for tests, benchmarks and ``qmsflow tick --now``."""

    def __init__(self, at: datetime) -> None:
        self._at = ensure_utc(at)

    def now(self) -> datetime:
        """Return the instant the clock was set to."""
        return self._at

    def set(self, at: datetime) -> None:
        """Move the clock to ``at``."""
        self._at = ensure_utc(at)

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta``."""
        self._at = self._at + delta


def ensure_utc(at: datetime) -> datetime:
    """Return ``at`` as an aware UTC datetime; a naive value is refused rather than guessed."""
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}: give a timezone")
    return at.astimezone(UTC)


def local_date(at: datetime) -> date:
    """Return the calendar date in Asia/Ho_Chi_Minh of an aware instant."""
    return ensure_utc(at).astimezone(LOCAL_TZ).date()


__all__ = ["LOCAL_TZ", "Clock", "FixedClock", "SystemClock", "ensure_utc", "local_date"]
