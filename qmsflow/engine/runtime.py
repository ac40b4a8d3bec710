"""The runtime the services share: definitions, calendar, clock and the history key."""

from __future__ import annotations

from dataclasses import dataclass

from .calendar import WorkingCalendar
from .clock import Clock
from .registry import Registry


@dataclass
class Runtime:
    """Everything a service needs besides the session; built once per process."""

    registry: Registry
    calendar: WorkingCalendar
    clock: Clock
    history_key: bytes
    language: str = "vi"


__all__ = ["Runtime"]
