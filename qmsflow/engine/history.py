"""Tamper-evident history: each row is an HMAC over a canonical form, chained to the previous row.

The canonical form does not depend on the database: JSON with sorted keys and no spaces, instants as
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC, and no floats anywhere (a float's text differs between
backends and drivers, so case data holds integers, strings, booleans and nulls only). The chain head
and length are kept on the case row, so a deleted last row is noticed too.

The form is versioned: form 1 (rows written before keys had ids) has no key id; form 2 adds the
form number and the signing key's id inside the HMAC'd bytes, so a row cannot be moved to another
key's name. The row's ``form`` and ``key_id`` columns say how to rebuild the bytes (keys.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from .keys import HistoryKey, Keyring, as_keyring, stored_keys, wrong_keys
from .models import Case, HistoryEntry, keep_in_step

CURRENT_FORM = 2

_INSERT = insert(cast(Table, HistoryEntry.__table__))
_CASES = cast(Table, Case.__table__)
_UPDATE_CASE = update(_CASES).where(_CASES.c.id == bindparam("case_id_"))


def canonical_instant(at: datetime) -> str:
    """Return the fixed text form of an instant used in hashes."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_plain(value: Any, path: str = "data") -> None:
    """Refuse anything in history data whose text form could differ between backends."""
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        raise TypeError(f"{path}: floats are not stored in history; use an integer or a string")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{path}: keys must be strings")
            check_plain(v, f"{path}.{k}")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{path}[{i}]")
        return
    raise TypeError(f"{path}: {type(value).__name__} cannot be stored in history")


def canonical_bytes(
    case_id: int, seq: int, entry: Mapping[str, Any], prev_hash: str, key_id: str | None = None
) -> bytes:
    """Return the canonical serialization of one row: form 2 with ``key_id``, form 1 without."""
    payload: dict[str, Any] = {
        "case": case_id,
        "seq": seq,
        "at": canonical_instant(entry["at"]),
        "kind": entry["kind"],
        "event": entry.get("event"),
        "from": entry.get("from_state"),
        "to": entry.get("to_state"),
        "actor": entry["actor"],
        "data": entry.get("data") or {},
        "prev": prev_hash,
    }
    if key_id is not None:
        payload["v"] = CURRENT_FORM
        payload["key"] = key_id
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def row_hash(
    key: bytes, case_id: int, seq: int, entry: Mapping[str, Any], prev_hash: str, key_id: str | None = None
) -> str:
    """Return the HMAC-SHA256 of a row under ``key`` (form 2 when ``key_id`` is given)."""
    return hmac.new(key, canonical_bytes(case_id, seq, entry, prev_hash, key_id), hashlib.sha256).hexdigest()


Signer = Keyring | HistoryKey | bytes


def _signing_key(key: Signer, at: datetime) -> HistoryKey:
    signer = key if isinstance(key, HistoryKey) else as_keyring(key).current
    signer.require_can_sign(at)
    return signer


def _next_row(
    key: Signer,
    case: Case,
    at: datetime,
    kind: str,
    actor: str,
    event: str | None,
    from_state: str | None,
    to_state: str | None,
    data: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Return the next row of ``case``'s chain, hashed and linked to the head the case holds now."""
    payload = dict(data or {})
    check_plain(payload)
    seq = case.history_length + 1
    fields = {
        "at": at,
        "kind": kind,
        "event": event,
        "from_state": from_state,
        "to_state": to_state,
        "actor": actor,
        "data": payload,
    }
    signer = _signing_key(key, at)
    digest = row_hash(signer.secret, case.id, seq, fields, case.history_head, signer.key_id)
    return {
        "case_id": case.id, "seq": seq, "prev_hash": case.history_head, "hash": digest,
        "key_id": signer.key_id, "form": CURRENT_FORM, **fields,
    }


def append(
    session: Session,
    key: Signer,
    case: Case,
    *,
    at: datetime,
    kind: str,
    actor: str,
    event: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    data: Mapping[str, Any] | None = None,
    case_values: Mapping[str, Any] | None = None,
) -> str:
    """Append one row to the case's chain, move the chain head and return it; the caller holds the case lock.

    Both are written at once: an INSERT of the row and an UPDATE of the case row that moves the head
    and sets ``case_values`` (other columns of the case, e.g. a transition's new state and data) in
    the same statement. The loaded ``case`` is set to match without being marked changed, so no
    flush has to write it: a flush cost as much as the rest of a transition (bench/RESULTS.md).
    """
    row = _next_row(key, case, at, kind, actor, event, from_state, to_state, data)
    session.execute(_INSERT, row)
    values = {**(case_values or {}), "history_head": row["hash"], "history_length": row["seq"]}
    # The SET clause is the parameters' keys; the statement and its compiled form are reused.
    session.execute(_UPDATE_CASE, {"case_id_": case.id, **values})
    keep_in_step(case, values)
    return str(row["hash"])


@dataclass
class HistoryBatch:
    """History rows staged for one write: the sweep appends to many chains, then writes them all at once.

    Each staged row moves the loaded case's chain head at once, so the next row (of this batch or of a
    later ``append``) links to it. Write the batch before anything else appends to the same case with
    ``append``, and expire the cases if the transaction is rolled back instead.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    heads: dict[int, dict[str, Any]] = field(default_factory=dict)

    def append(self, key: Signer, case: Case, *, at: datetime, kind: str, actor: str, data: Mapping[str, Any] | None = None) -> str:
        """Stage one row on the case's chain and return the new head."""
        row = _next_row(key, case, at, kind, actor, None, None, None, data)
        self.rows.append(row)
        head = {"history_head": row["hash"], "history_length": row["seq"]}
        self.heads[case.id] = head
        keep_in_step(case, head)
        return str(row["hash"])

    def write(self, session: Session) -> None:
        """Insert the staged rows and move each case's head, one executemany each; then start empty."""
        if self.rows:
            session.execute(_INSERT, self.rows)
            session.execute(_UPDATE_CASE, [{"case_id_": case_id, **head} for case_id, head in self.heads.items()])
        self.rows.clear()
        self.heads.clear()


def _entry_fields(row: HistoryEntry) -> dict[str, Any]:
    return {
        "at": row.at,
        "kind": row.kind,
        "event": row.event,
        "from_state": row.from_state,
        "to_state": row.to_state,
        "actor": row.actor,
        "data": row.data,
    }


@dataclass(frozen=True)
class AuditFinding:
    """One problem ``verify`` found: the case (0: none), the row (by its sequence number), or a key."""

    case_id: int
    seq: int | None
    problem: str
    key_id: str | None = None

    def __str__(self) -> str:
        if self.key_id is not None:
            return f"history key {self.key_id!r}: {self.problem}"
        where = f"case {self.case_id}" + (f" row {self.seq}" if self.seq is not None else "")
        return f"{where}: {self.problem}"


@dataclass
class _Keys:
    """What verify knows about keys: the keyring, keys not to trust, retirements, and key findings."""

    ring: Keyring
    wrong: set[str] = field(default_factory=set)
    retired_at: dict[str, datetime] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # rows not checked, by key id
    unknown: dict[str, int] = field(default_factory=dict)  # rows of keys not in the keyring

    @classmethod
    def load(cls, session: Session, key: Keyring | bytes) -> _Keys:
        ring = as_keyring(key)
        stored = stored_keys(session)
        retired = {k.key_id: k.retired_at for k in ring.retired if k.retired_at is not None}
        # The recorded retirement wins: it was written when the key was retired, the setting later.
        retired.update({r.key_id: r.retired_at for r in stored.values() if r.retired_at is not None})
        return cls(ring, set(wrong_keys(ring, stored)), retired)

    def findings(self) -> list[AuditFinding]:
        out = [
            AuditFinding(0, None, f"this is not the key that wrote the chain ({n} rows not checked); "
                                  "its check value differs from the recorded one", key_id)
            for key_id, n in sorted(self.skipped.items())
        ]
        out += [
            AuditFinding(0, None, f"{n} rows are signed by this key, which is not in the keyring", key_id)
            for key_id, n in sorted(self.unknown.items())
        ]
        return out


def _check_row_hash(keys: _Keys, case: Case, row: HistoryEntry, fields: dict[str, Any]) -> AuditFinding | None:
    if row.form not in (1, CURRENT_FORM):
        return AuditFinding(case.id, row.seq, f"canonical form {row.form} is unknown to this version")
    key = keys.ring.get(row.key_id)
    if key is None:
        keys.unknown[row.key_id] = keys.unknown.get(row.key_id, 0) + 1
        return None
    if row.key_id in keys.wrong:
        keys.skipped[row.key_id] = keys.skipped.get(row.key_id, 0) + 1
        return None
    key_id = row.key_id if row.form >= 2 else None
    if not hmac.compare_digest(row.hash, row_hash(key.secret, case.id, row.seq, fields, row.prev_hash, key_id)):
        plain = hashlib.sha256(canonical_bytes(case.id, row.seq, fields, row.prev_hash, key_id)).hexdigest()
        if row.hash == plain:
            return AuditFinding(case.id, row.seq, "hash recomputed without the history key")
        return AuditFinding(case.id, row.seq, "content does not match its hash (edited)")
    retired_at = keys.retired_at.get(row.key_id)
    if retired_at is not None and row.at >= retired_at:
        return AuditFinding(case.id, row.seq, f"signed by key {row.key_id!r} after its retirement at {retired_at.isoformat()}")
    return None


def verify_case(key: Keyring | bytes | _Keys, case: Case, rows: list[HistoryEntry]) -> list[AuditFinding]:
    """Check one case's chain: each row's HMAC, the links, the numbering, head and length on the case."""
    keys = key if isinstance(key, _Keys) else _Keys(as_keyring(key))
    findings: list[AuditFinding] = []
    prev = ""
    expected_seq = 1
    for row in rows:
        if row.seq != expected_seq:
            findings.append(
                AuditFinding(case.id, row.seq, f"rows {expected_seq}..{row.seq - 1} are missing (deleted)")
            )
        if row.prev_hash != prev:
            findings.append(AuditFinding(case.id, row.seq, "does not chain to the row before it"))
        problem = _check_row_hash(keys, case, row, _entry_fields(row))
        if problem is not None:
            findings.append(problem)
        prev = row.hash
        expected_seq = row.seq + 1
    if case.history_length != len(rows) or (rows and rows[-1].seq != case.history_length):
        findings.append(
            AuditFinding(
                case.id,
                None,
                f"case records {case.history_length} rows but {len(rows)} remain (last rows deleted?)",
            )
        )
    elif case.history_head != prev:
        findings.append(AuditFinding(case.id, None, "chain head on the case does not match the last row"))
    findings.extend(_replay(case, rows))
    return findings


def _replay(case: Case, rows: list[HistoryEntry]) -> list[AuditFinding]:
    """Replay the state, and the unit where the rows say it: an ``opened`` row with ``unit_id`` and each
    ``unit_moved`` row (a reorganisation, qmsflow/engine/reorganize.py) must chain to the case's unit."""
    state: str | None = None
    unit: int | None = None
    for row in rows:
        if row.to_state is not None:
            if state is not None and row.from_state != state:
                return [AuditFinding(case.id, row.seq, f"starts from {row.from_state!r} but the case was in {state!r}")]
            state = row.to_state
        data = row.data or {}
        if row.kind == "opened" and isinstance(data.get("unit_id"), int):
            unit = data["unit_id"]
        elif row.kind == "unit_moved":
            if unit is not None and data.get("from_unit_id") != unit:
                return [AuditFinding(case.id, row.seq, f"moves from unit {data.get('from_unit_id')} but the case was on unit {unit}")]
            unit = data.get("to_unit_id")
    if rows and state != case.state:
        return [AuditFinding(case.id, None, f"history replays to {state!r} but the case says {case.state!r}")]
    if unit is not None and unit != case.unit_id:
        return [AuditFinding(case.id, None, f"history replays to unit {unit} but the case says unit {case.unit_id}")]
    return []


def iter_cases_with_history(session: Session, batch: int = 500) -> Iterator[tuple[Case, list[HistoryEntry]]]:
    """Yield every case with its rows in order, a bounded batch of cases at a time."""
    last_id = 0
    while True:
        cases = list(session.scalars(select(Case).where(Case.id > last_id).order_by(Case.id).limit(batch)))
        if not cases:
            return
        ids = [c.id for c in cases]
        rows: dict[int, list[HistoryEntry]] = {i: [] for i in ids}
        for row in session.scalars(
            select(HistoryEntry).where(HistoryEntry.case_id.in_(ids)).order_by(HistoryEntry.case_id, HistoryEntry.seq)
        ):
            rows[row.case_id].append(row)
        for case in cases:
            yield case, rows[case.id]
        last_id = ids[-1]
        session.expunge_all()


def verify_all(session: Session, key: Keyring | bytes) -> tuple[int, int, list[AuditFinding]]:
    """Verify every chain under the keyring; return (cases checked, rows checked, findings)."""
    keys = _Keys.load(session, key)
    findings: list[AuditFinding] = []
    cases = rows_checked = 0
    for case, rows in iter_cases_with_history(session):
        cases += 1
        rows_checked += len(rows)
        findings.extend(verify_case(keys, case, rows))
    orphans = session.scalar(
        select(func.count()).select_from(HistoryEntry).where(~HistoryEntry.case_id.in_(select(Case.id)))
    )
    if orphans:
        findings.append(AuditFinding(0, None, f"{orphans} history rows belong to no case (case deleted)"))
    findings.extend(keys.findings())
    return cases, rows_checked, findings


__all__ = [
    "CURRENT_FORM",
    "AuditFinding",
    "HistoryBatch",
    "Signer",
    "append",
    "canonical_bytes",
    "canonical_instant",
    "check_plain",
    "row_hash",
    "verify_all",
    "verify_case",
]
