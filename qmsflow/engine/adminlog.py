"""The administrative log: one append-only, HMAC-chained record of every change to users, units,
contacts and the calendar, for the whole installation.

Each write service appends one row in the caller's transaction: who, when, what (an action and the
object's kind and id), and the object's state before and after. Rows are chained like the case
history (qmsflow/engine/history.py), with a canonical form of their own, kept here so a change to
the history's form does not change this one: JSON with sorted keys and no spaces, the instant as
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC, no floats, and a version number (``"v": 1``).

The chain's head and length live in the one ``admin_log_head`` row, locked by each append, so
appends are serialised and a deleted last row is noticed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .history import check_plain
from .keys import Keyring, as_keyring
from .models import AdminLogEntry, AdminLogHead

if TYPE_CHECKING:  # permissions imports units, which writes here
    from .permissions import Actor

FORM_VERSION = 1
_HEAD_ID = 1
_HEAD = cast(Table, AdminLogHead.__table__)


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(seq: int, fields: Mapping[str, Any], prev_hash: str) -> bytes:
    """Return the canonical serialization of one admin log row and the hash it chains to."""
    payload = {
        "v": FORM_VERSION,
        "seq": seq,
        "at": _instant(fields["at"]),
        "actor": fields["actor"],
        "action": fields["action"],
        "object": [fields["object_kind"], fields["object_id"]],
        "before": fields["before"],
        "after": fields["after"],
        "prev": prev_hash,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def row_hash(key: bytes, seq: int, fields: Mapping[str, Any], prev_hash: str) -> str:
    """Return the HMAC-SHA256 of an admin log row under ``key``."""
    return hmac.new(key, canonical_bytes(seq, fields, prev_hash), hashlib.sha256).hexdigest()


def _locked_head(session: Session) -> AdminLogHead:
    """Return the chain head row, locked for this transaction; created empty on first use.

    Inserted if missing before it is locked (as the calendar fingerprint is, qmsflow/engine/replanning.py),
    so two first appends on a new database wait for each other instead of one failing on the key.
    """
    insert = (sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert)(_HEAD)
    session.execute(insert.values(id=_HEAD_ID, length=0, head="").on_conflict_do_nothing(index_elements=["id"]))
    head = session.scalar(
        select(AdminLogHead).where(AdminLogHead.id == _HEAD_ID).with_for_update().execution_options(populate_existing=True)
    )
    assert head is not None
    return head


def record(
    session: Session,
    key: Keyring | bytes,
    actor: Actor,
    *,
    at: datetime,
    action: str,
    object_kind: str,
    object_id: object,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> AdminLogEntry:
    """Append one row to the admin log in the caller's transaction and move the chain head."""
    fields: dict[str, Any] = {
        "at": at,
        "actor": actor.username,
        "action": action,
        "object_kind": object_kind,
        "object_id": str(object_id),
        "before": dict(before) if before is not None else None,
        "after": dict(after) if after is not None else None,
    }
    check_plain(fields["before"], "before")
    check_plain(fields["after"], "after")
    head = _locked_head(session)
    seq = head.length + 1
    signing = as_keyring(key).current.secret
    entry = AdminLogEntry(seq=seq, prev_hash=head.head, hash=row_hash(signing, seq, fields, head.head), **fields)
    session.add(entry)
    head.length, head.head = seq, entry.hash
    session.flush()
    return entry


def changed(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> bool:
    """Return whether a write changes anything worth a row (a no-op write is not logged)."""
    return before != after


def entries(session: Session, actor: Actor, *, before_seq: int | None = None, limit: int = 50) -> list[AdminLogEntry]:
    """Return up to ``limit`` rows, newest first (before ``before_seq`` when given), for an administrator of users."""
    from .errors import FieldProblem, ValidationFailed
    from .permissions import AdminArea, require_admin

    require_admin(actor, AdminArea.USERS)
    if not 1 <= limit <= 500 or (before_seq is not None and before_seq < 1):
        raise ValidationFailed([FieldProblem("page", "1 to 500 rows, before a row number >= 1", "page_out_of_range")])
    query = select(AdminLogEntry).order_by(AdminLogEntry.seq.desc()).limit(limit)
    if before_seq is not None:
        query = query.where(AdminLogEntry.seq < before_seq)
    return list(session.scalars(query))


@dataclass(frozen=True)
class AdminLogFinding:
    """One problem ``verify`` found in the admin log: the row (by its sequence number) and what is wrong."""

    seq: int | None
    problem: str

    def __str__(self) -> str:
        return "admin log" + (f" row {self.seq}" if self.seq is not None else "") + f": {self.problem}"


def _fields(row: AdminLogEntry) -> dict[str, Any]:
    return {
        "at": row.at, "actor": row.actor, "action": row.action, "object_kind": row.object_kind,
        "object_id": row.object_id, "before": row.before, "after": row.after,
    }


def verify(session: Session, key: Keyring | bytes, batch: int = 1000) -> tuple[int, list[AdminLogFinding]]:
    """Check the whole chain: numbering, links, each row's HMAC, and the head row; return (rows, findings).

    The rows do not name their key yet (the history's rows do, qmsflow/engine/keys.py): a row is
    taken as signed when a key of the keyring that was not yet retired at the row's instant matches.
    """
    ring = as_keyring(key)
    findings: list[AdminLogFinding] = []
    prev, expected, count, last_seq = "", 1, 0, 0
    while True:
        rows = list(session.scalars(select(AdminLogEntry).where(AdminLogEntry.seq > last_seq).order_by(AdminLogEntry.seq).limit(batch)))
        if not rows:
            break
        for row in rows:
            if row.seq != expected:
                findings.append(AdminLogFinding(row.seq, f"rows {expected}..{row.seq - 1} are missing (deleted)"))
            if row.prev_hash != prev:
                findings.append(AdminLogFinding(row.seq, "does not chain to the row before it"))
            fields = _fields(row)
            if not any(
                hmac.compare_digest(row.hash, row_hash(k.secret, row.seq, fields, row.prev_hash))
                for k in (ring.current, *ring.retired)
                if k.retired_at is None or row.at < k.retired_at
            ):
                if row.hash == hashlib.sha256(canonical_bytes(row.seq, fields, row.prev_hash)).hexdigest():
                    findings.append(AdminLogFinding(row.seq, "hash recomputed without the key"))
                else:
                    findings.append(AdminLogFinding(row.seq, "content does not match its hash (edited)"))
            prev, expected, last_seq = row.hash, row.seq + 1, row.seq
            count += 1
        session.expunge_all()
    head = session.get(AdminLogHead, _HEAD_ID)
    if head is None:
        if count:
            findings.append(AdminLogFinding(None, f"{count} rows but the chain head row is gone (deleted)"))
    elif head.length != last_seq:
        findings.append(AdminLogFinding(None, f"the head records {head.length} rows but the last is row {last_seq} (last rows deleted?)"))
    elif head.head != prev:
        findings.append(AdminLogFinding(None, "the chain head does not match the last row"))
    return count, findings


__all__ = ["AdminLogFinding", "FORM_VERSION", "canonical_bytes", "changed", "entries", "record", "row_hash", "verify"]
