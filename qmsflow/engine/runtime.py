"""The runtime the services share: definitions, calendar, clock and the history keyring."""

from __future__ import annotations

from dataclasses import dataclass

from .calendar import WorkingCalendar
from .clock import Clock
from .keys import Keyring, as_keyring
from .registry import Registry


@dataclass
class Runtime:
    """Everything a service needs besides the session; built once per process."""

    registry: Registry
    calendar: WorkingCalendar
    clock: Clock
    # The keyring (its current key signs); a bare key is taken as a keyring of one key with id "1".
    # The name stays ``history_key`` so callers hand it to history.append unchanged.
    history_key: Keyring | bytes
    language: str = "vi"

    def __post_init__(self) -> None:
        self.history_key = as_keyring(self.history_key)

    @property
    def keyring(self) -> Keyring:
        """The history keyring."""
        return as_keyring(self.history_key)


__all__ = ["Runtime"]
