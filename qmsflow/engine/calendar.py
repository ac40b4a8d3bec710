"""The Vietnamese working calendar and Civil Code deadline counting.

Public holidays come from the pinned ``holidays`` package (it computes the lunar dates: Tết, Hùng Kings).
The Prime Minister's yearly swaps are only partly known to it (it knows the extra weekday off, never the
make-up Saturday), so a per-year override list from config can add days off and working days; an
override always wins over the package and over the weekend rule.

Counting (Civil Code 2015 Art. 147-148): the start day is not counted; "N months" ends on the same-numbered
day of the last month, or that month's last day; a period whose last day is not a working day ends on the
next working day. A due date is a local date; the deadline passes at 00:00 Asia/Ho_Chi_Minh the day after.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from .clock import LOCAL_TZ

if TYPE_CHECKING:
    from holidays import HolidayBase


class LengthUnit(StrEnum):
    """How a timer's length is counted."""

    WORKING_DAYS = "working_days"
    DAYS = "days"
    MONTHS = "months"


@dataclass(frozen=True)
class CalendarOverrides:
    """Days the package does not know: extra days off and make-up working days, each with a name."""

    days_off: Mapping[date, str] = field(default_factory=dict)
    working_days: Mapping[date, str] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, raw: Mapping[object, object] | None) -> CalendarOverrides:
        """Build overrides from the config shape ``{year: {days_off: [...], working_days: [...]}}``.

        Each list item is either a date or ``{date: ..., name: ...}``; a date listed as both is refused.
        """
        days_off: dict[date, str] = {}
        working: dict[date, str] = {}
        for year, body in (raw or {}).items():
            if not isinstance(body, Mapping):
                raise ValueError(f"calendar override for {year!r} must be a mapping")
            unknown = set(body) - {"days_off", "working_days"}
            if unknown:
                raise ValueError(f"calendar override {year}: unknown keys {sorted(map(str, unknown))}")
            for key, target in (("days_off", days_off), ("working_days", working)):
                for item in body.get(key) or []:
                    day, name = _parse_override_item(item, f"{year}.{key}")
                    if str(day.year) != str(year):
                        raise ValueError(f"calendar override {year}.{key}: {day} is not in {year}")
                    target[day] = name
        both = set(days_off) & set(working)
        if both:
            raise ValueError(
                f"calendar override lists {', '.join(d.isoformat() for d in sorted(both))}"
                " as both day off and working day"
            )
        return cls(days_off=days_off, working_days=working)

    def fingerprint(self) -> str:
        """Return a stable digest of the overrides, to notice when config changed."""
        payload = {
            "off": sorted(d.isoformat() for d in self.days_off),
            "work": sorted(d.isoformat() for d in self.working_days),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def rows(self) -> list[tuple[date, bool, str]]:
        """Return every override as (day, working, name), by day: the shape the database stores."""
        out = [(day, False, name) for day, name in self.days_off.items()]
        out += [(day, True, name) for day, name in self.working_days.items()]
        return sorted(out)

    @classmethod
    def from_rows(cls, rows: list[tuple[date, bool, str]]) -> CalendarOverrides:
        """Build overrides from (day, working, name) rows, as ``rows`` returns them."""
        return cls(
            days_off={day: name for day, working, name in rows if not working},
            working_days={day: name for day, working, name in rows if working},
        )

    def dates(self) -> set[date]:
        """Return every date the overrides mention."""
        return set(self.days_off) | set(self.working_days)


@functools.cache
def holidays_version() -> str:
    """Return the installed ``holidays`` package's version, without importing it (that takes long)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("holidays")
    except PackageNotFoundError:  # pragma: no cover - it is a pinned dependency
        return "unknown"


def calendar_fingerprint(rows: list[tuple[date, bool, str]], holidays: str) -> str:
    """Return the digest of a calendar: its override rows (day, working, name) and the ``holidays`` version.

    Two processes plan the same deadlines exactly when their fingerprints are equal; the stored
    one is that of the calendar the pending timers were planned on (qmsflow/engine/calendar_store.py).
    """
    payload = {"days": [[d.isoformat(), working, name] for d, working, name in sorted(rows)], "holidays": holidays}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _parse_override_item(item: object, where: str) -> tuple[date, str]:
    if isinstance(item, Mapping):
        raw_day, name = item.get("date"), str(item.get("name") or "")
    else:
        raw_day, name = item, ""
    if isinstance(raw_day, datetime):
        raise ValueError(f"calendar override {where}: {raw_day!r} must be a date, not a time")
    if isinstance(raw_day, date):
        return raw_day, name
    try:
        return date.fromisoformat(str(raw_day)), name
    except ValueError:
        raise ValueError(f"calendar override {where}: {raw_day!r} is not a YYYY-MM-DD date") from None


class WorkingCalendar:
    """Answers which days are working days in Vietnam and counts deadlines on them."""

    def __init__(self, overrides: CalendarOverrides | None = None, *, language: str = "vi") -> None:
        self.overrides = overrides or CalendarOverrides()
        self._language = language
        self._package: HolidayBase | None = None
        # A calendar's overrides never change (a changed calendar is a new WorkingCalendar), so each
        # day's answer and each working-day shift are kept: planning one timer asks about some 70
        # days, and those lookups cost as much as the rest of the plan (bench/RESULTS.md).
        self._working: dict[date, bool] = {}
        self._shifted: dict[tuple[date, int], date] = {}
        self._fingerprint: str | None = None

    @property
    def holidays_version(self) -> str:
        """The ``holidays`` package version this calendar answers with."""
        return holidays_version()

    def fingerprint(self) -> str:
        """Return the digest of this calendar (overrides and ``holidays`` version), see ``calendar_fingerprint``."""
        if self._fingerprint is None:
            self._fingerprint = calendar_fingerprint(self.overrides.rows(), self.holidays_version)
        return self._fingerprint

    @property
    def _holidays(self) -> HolidayBase:
        """The package's Vietnamese holidays, made on first use: importing ``holidays`` loads every
        country it knows (a tenth of a second or more), which a command that only reads cases does not need."""
        if self._package is None:
            import holidays

            # The package fills years lazily as dates are asked for (expand=True).
            self._package = holidays.country_holidays("VN", language=self._language)
        return self._package


    def is_working_day(self, day: date) -> bool:
        """Return whether agencies work on ``day`` (Mon-Fri, not a holiday, overrides first)."""
        known = self._working.get(day)
        if known is None:
            known = self._working[day] = self._is_working_day(day)
        return known

    def _is_working_day(self, day: date) -> bool:
        if day in self.overrides.working_days:
            return True
        if day in self.overrides.days_off:
            return False
        return day.weekday() < 5 and day not in self._holidays

    def day_off_reason(self, day: date) -> str | None:
        """Return why ``day`` is not worked (holiday name, override name or weekend), or None."""
        if self.is_working_day(day):
            return None
        if day in self.overrides.days_off:
            return self.overrides.days_off[day] or "override"
        name = self._holidays.get(day)
        return str(name) if name else "weekend"

    def on_or_after(self, day: date) -> date:
        """Return ``day`` if it is a working day, else the next working day."""
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def on_or_before(self, day: date) -> date:
        """Return ``day`` if it is a working day, else the working day before it."""
        while not self.is_working_day(day):
            day -= timedelta(days=1)
        return day

    def add_working_days(self, start: date, count: int) -> date:
        """Return the day ``count`` working days after ``start`` (start not counted); negative goes back."""
        known = self._shifted.get((start, count))
        if known is None:
            known = self._shifted[(start, count)] = self._add_working_days(start, count)
        return known

    def _add_working_days(self, start: date, count: int) -> date:
        step = 1 if count >= 0 else -1
        remaining = abs(count)
        day = start
        while remaining:
            day += timedelta(days=step)
            if self.is_working_day(day):
                remaining -= 1
        return day

    def due_date(self, start: date, length: int, unit: LengthUnit | str) -> date:
        """Return the last day of a period of ``length`` ``unit`` starting after ``start``.

        Working-day periods end on a working day by construction; calendar periods ending on a day off
        move to the next working day (Civil Code Art. 148(5)).
        """
        unit = LengthUnit(unit)
        if length < 0:
            raise ValueError("a period cannot be negative")
        if unit is LengthUnit.WORKING_DAYS:
            # on_or_after matters for length 0 only: a zero period started on a day off
            return self.on_or_after(self.add_working_days(start, length))
        if unit is LengthUnit.DAYS:
            last = start + timedelta(days=length)
        else:
            last = add_months(start, length)
        return self.on_or_after(last)

    def days_off_between(self, first: date, last: date) -> list[tuple[date, str]]:
        """Return every non-working day from ``first`` to ``last`` inclusive, with its reason."""
        out = []
        day = first
        while day <= last:
            reason = self.day_off_reason(day)
            if reason:
                out.append((day, reason))
            day += timedelta(days=1)
        return out


def add_months(start: date, months: int) -> date:
    """Civil Code month arithmetic: same-numbered day, or the month's last day when it has none."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    last_day = _stdlib_calendar.monthrange(year, month)[1]
    return date(year, month, min(start.day, last_day))


def deadline_instant(due: date) -> datetime:
    """Return the UTC instant at which a due date has passed: 00:00 local time the next day."""
    local_midnight = datetime.combine(due + timedelta(days=1), time(0, 0), tzinfo=LOCAL_TZ)
    return local_midnight.astimezone(UTC)


__all__ = [
    "CalendarOverrides",
    "LengthUnit",
    "WorkingCalendar",
    "add_months",
    "calendar_fingerprint",
    "deadline_instant",
    "holidays_version",
]
