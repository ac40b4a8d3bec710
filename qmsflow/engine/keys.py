"""History keys: one current key signs new rows; retired keys only verify rows written before retirement.

Each key has an id that the rows it signs carry (inside the HMAC'd form, history.canonical_bytes),
and a check value: the HMAC of a fixed label under the key, stored in ``history_keys`` when the key
is first registered. The check value tells "this is not the key that wrote the chain" apart from
"this row was edited" without storing the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .errors import ConfigurationError
from .models import HistoryKeyRecord

CHECK_LABEL = b"qmsflow history key check value"
KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


class HistoryKeyRetired(ConfigurationError):
    """A retired history key was asked to sign a row.

    Attributes:
        key_id: the retired key.
        retired_at: when it was retired.
    """

    def __init__(self, key_id: str, retired_at: datetime) -> None:
        self.key_id = key_id
        self.retired_at = retired_at
        super().__init__(
            f"history key {key_id!r} was retired at {retired_at.isoformat()} and cannot sign a new row; "
            "restart with the current keyring"
        )


@dataclass(frozen=True)
class HistoryKey:
    """One key: its id, its secret and, once retired, the instant from which it signs nothing."""

    key_id: str
    secret: bytes = field(repr=False)
    retired_at: datetime | None = None

    def check_value(self) -> str:
        """Return the HMAC of the fixed label under this key: comparable, never revealing the key."""
        return hmac.new(self.secret, CHECK_LABEL, hashlib.sha256).hexdigest()

    def require_can_sign(self, at: datetime) -> None:
        """Raise HistoryKeyRetired if this key was retired at or before ``at``."""
        if self.retired_at is not None and at >= self.retired_at:
            raise HistoryKeyRetired(self.key_id, self.retired_at)


@dataclass(frozen=True)
class Keyring:
    """The current signing key and the retired keys that verify older rows."""

    current: HistoryKey
    retired: tuple[HistoryKey, ...] = ()

    def __post_init__(self) -> None:
        keys = (self.current, *self.retired)
        for key in keys:
            if not KEY_ID_RE.match(key.key_id):
                raise ConfigurationError(f"history key id {key.key_id!r}: use 1-32 letters, digits, '_', '.', '-'")
            if not key.secret:
                raise ConfigurationError(f"history key {key.key_id!r}: the key is empty")
        if self.current.retired_at is not None:
            raise ConfigurationError(f"history key {self.current.key_id!r}: the current key cannot be retired")
        for key in self.retired:
            if key.retired_at is None:
                raise ConfigurationError(f"retired history key {key.key_id!r} needs the instant it was retired")
        ids = [k.key_id for k in keys]
        if len(set(ids)) != len(ids):
            raise ConfigurationError(f"history keyring: a key id is listed twice in {ids}")
        if len({k.secret for k in keys}) != len(keys):
            raise ConfigurationError("history keyring: two key ids hold the same key")

    @classmethod
    def single(cls, secret: bytes, key_id: str = "1") -> Keyring:
        """Return a keyring of one current key (the plain ``history_key`` setting)."""
        return cls(HistoryKey(key_id, secret))

    def get(self, key_id: str) -> HistoryKey | None:
        """Return the key with ``key_id``, current or retired, or None."""
        for key in (self.current, *self.retired):
            if key.key_id == key_id:
                return key
        return None

    def rotated(self, new: HistoryKey, at: datetime) -> Keyring:
        """Return the keyring with ``new`` current and the old current key retired at ``at``."""
        old = HistoryKey(self.current.key_id, self.current.secret, at)
        return Keyring(new, (*self.retired, old))

    def next_key_id(self) -> str:
        """Return an id for the next key: one more than the largest numeric id."""
        numbers = [int(k.key_id) for k in (self.current, *self.retired) if k.key_id.isdigit()]
        return str(max(numbers, default=0) + 1)


def as_keyring(key: Keyring | bytes) -> Keyring:
    """Accept a bare key (one current key with id "1") where a keyring is expected."""
    return key if isinstance(key, Keyring) else Keyring.single(key)


def parse_retired_keys(text: str, where: str) -> tuple[HistoryKey, ...]:
    """Parse ``ID=KEY@RETIRED_AT`` entries separated by commas or spaces; ``where`` names the setting."""
    keys: list[HistoryKey] = []
    for entry in text.replace(",", " ").split():
        key_id, eq, rest = entry.partition("=")
        secret, at, retired_text = rest.rpartition("@")
        if not eq or not at or not key_id or not secret:
            raise ConfigurationError(f"{where}: entry {key_id or entry[:8]!r}... is not ID=KEY@RETIRED_AT")
        try:
            retired_at = datetime.fromisoformat(retired_text)
        except ValueError:
            raise ConfigurationError(f"{where}: key {key_id!r}: {retired_text!r} is not an ISO instant") from None
        if retired_at.tzinfo is None:
            raise ConfigurationError(f"{where}: key {key_id!r}: the retirement instant needs a UTC offset")
        keys.append(HistoryKey(key_id, secret.encode("utf-8"), retired_at.astimezone(UTC)))
    return tuple(keys)


def format_retired_keys(keys: tuple[HistoryKey, ...]) -> str:
    """Return the setting text ``parse_retired_keys`` reads back."""
    return " ".join(
        f"{k.key_id}={k.secret.decode('utf-8')}@{k.retired_at.astimezone(UTC).isoformat()}" for k in keys if k.retired_at
    )


def stored_keys(session: Session) -> dict[str, HistoryKeyRecord]:
    """Return the recorded keys by id."""
    return {r.key_id: r for r in session.scalars(select(HistoryKeyRecord))}


def wrong_keys(keyring: Keyring, stored: dict[str, HistoryKeyRecord]) -> list[str]:
    """Return the ids of keyring keys whose check value differs from the recorded one."""
    return [
        k.key_id
        for k in (keyring.current, *keyring.retired)
        if k.key_id in stored and not hmac.compare_digest(stored[k.key_id].check_value, k.check_value())
    ]


def _insert_missing(session: Session, keyring: Keyring, now: datetime) -> None:
    """Insert the keyring's unrecorded keys; a key another process records at the same time is kept."""
    rows = [
        {"key_id": k.key_id, "check_value": k.check_value(), "created_at": now, "retired_at": k.retired_at}
        for k in (keyring.current, *keyring.retired)
    ]
    table = cast(Table, HistoryKeyRecord.__table__)
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # Schedulers starting together all register key 1: the first wins, the rest are checked below.
    session.execute(insert(table).on_conflict_do_nothing(index_elements=["key_id"]), rows)


def register_keys(session: Session, keyring: Keyring, now: datetime) -> None:
    """Record keys not yet known and their retirements; refuse a key that is not the one recorded."""
    _insert_missing(session, keyring, now)
    session.expire_all()
    stored = stored_keys(session)
    wrong = wrong_keys(keyring, stored)
    if wrong:
        raise ConfigurationError(
            f"history key(s) {wrong}: not the key that wrote the chain (the check value differs from the one "
            "recorded); restore the instance's qmsflow.toml from the backup"
        )
    current = stored.get(keyring.current.key_id)
    if current is not None and current.retired_at is not None:
        raise HistoryKeyRetired(current.key_id, current.retired_at)
    for key in keyring.retired:
        record = stored[key.key_id]
        if record.retired_at is None and key.retired_at is not None:
            record.retired_at = key.retired_at
    session.flush()


def rotate(session: Session, keyring: Keyring, now: datetime, secret: bytes) -> Keyring:
    """Retire the current key at ``now`` and record ``secret`` as the new current key; return the new keyring."""
    register_keys(session, keyring, now)
    new = keyring.rotated(HistoryKey(keyring.next_key_id(), secret), now)
    register_keys(session, new, now)
    return new


__all__ = [
    "HistoryKey",
    "HistoryKeyRetired",
    "Keyring",
    "as_keyring",
    "format_retired_keys",
    "parse_retired_keys",
    "register_keys",
    "rotate",
    "stored_keys",
    "wrong_keys",
]
