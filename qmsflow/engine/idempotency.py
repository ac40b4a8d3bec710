"""Idempotency keys of the JSON API: a retried POST gets the first answer, and changes nothing more.

A key belongs to one token. ``begin`` runs in its own short write transaction before the request's
work: it records the key as ``running`` with a hash of the request (method, path, content type,
body), or finds the key already there and then says what to do: replay the stored answer (the
first request is done), refuse with ``IdempotencyInFlight`` (it is still running: 409), or refuse
with ValidationFailed ``idempotency_reused`` (the same key with another request: 422). The unique
(token, key) index makes the first of two simultaneous requests, on any web process, the only one
that runs. ``finish`` stores a completed 2xx or 4xx answer; ``abandon`` forgets the key after a
5xx, so the client may retry it.

A running key whose lease has passed was left by a process that died mid-request; the next
request with it takes it over. Keys are kept for ``[api] idempotency_hours`` (at least 24) and
deleted by the request that finds them expired, and in bulk by ``purge``.

The first request's work and its stored answer are two transactions: a process that dies between
them leaves the key running until its lease passes, and the retry after that runs again (a case
event then usually answers 409 or 422, since the case has moved on). See docs/api.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .errors import FieldProblem, IdempotencyInFlight, ValidationFailed
from .models import IdempotencyKey

MAX_KEY = 255
LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class Replay:
    """The stored answer of a completed first request."""

    status: int
    headers: dict[str, str]
    body: str


def check_key(key: str) -> str:
    """Return ``key`` if it is 1 to 255 printable ASCII characters; ValidationFailed otherwise."""
    if not 1 <= len(key) <= MAX_KEY or not all(" " <= ch <= "~" for ch in key):
        raise ValidationFailed([FieldProblem("Idempotency-Key", "idempotency_key")])
    return key


def request_hash(method: str, path: str, content_type: str, body: bytes) -> str:
    """Return the fingerprint a key's later requests must match."""
    digest = hashlib.sha256()
    for part in (method.upper(), path, content_type.split(";")[0].strip().lower()):
        digest.update(part.encode("utf-8") + b"\0")
    digest.update(body)
    return digest.hexdigest()


def begin(session: Session, token_id: int, key: str, fingerprint: str, now: datetime, keep: timedelta) -> Replay | None:
    """Claim ``key`` for this request (None: go on, then ``finish``), or return the answer to replay.

    Raises IdempotencyInFlight while the first request runs, ValidationFailed when the key was used
    with another request. Run it in a write transaction of its own and commit before the work.
    """
    check_key(key)
    row = session.scalar(select(IdempotencyKey).where(IdempotencyKey.token_id == token_id, IdempotencyKey.key == key))
    if row is not None and (row.expires_at <= now or (row.state == "running" and row.lease_until <= now)):
        session.delete(row)  # expired, or left running by a process that died: start afresh
        session.flush()
        row = None
    if row is not None:
        if row.request_hash != fingerprint:
            raise ValidationFailed([FieldProblem("Idempotency-Key", "idempotency_reused")])
        if row.state == "running" or row.status is None:
            raise IdempotencyInFlight(key)
        return Replay(row.status, dict(row.headers or {}), row.body or "")
    try:
        with session.begin_nested():
            session.add(IdempotencyKey(
                token_id=token_id, key=key, request_hash=fingerprint, state="running", status=None, headers=None, body=None,
                created_at=now, lease_until=now + LEASE, expires_at=now + keep,
            ))
    except IntegrityError:
        # another process claimed it between our read and our insert (PostgreSQL; SQLite writers queue)
        raise IdempotencyInFlight(key) from None
    return None


def finish(session: Session, token_id: int, key: str, status: int, headers: dict[str, str], body: str) -> None:
    """Store the first request's answer (only 2xx and 4xx are kept; anything else forgets the key)."""
    row = session.scalar(select(IdempotencyKey).where(IdempotencyKey.token_id == token_id, IdempotencyKey.key == key))
    if row is None:
        return
    if not (200 <= status < 300 or 400 <= status < 500):
        session.delete(row)
        return
    row.state, row.status, row.headers, row.body = "done", status, headers, body


def abandon(session: Session, token_id: int, key: str) -> None:
    """Forget a key whose request failed on the server's side, so a retry runs it."""
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.token_id == token_id, IdempotencyKey.key == key))


def purge(session: Session, now: datetime, *, limit: int = 1000) -> int:
    """Delete up to ``limit`` expired keys; return how many."""
    ids = list(session.scalars(select(IdempotencyKey.id).where(IdempotencyKey.expires_at <= now).limit(limit)))
    if ids:
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(ids)))
    return len(ids)


__all__ = ["LEASE", "MAX_KEY", "Replay", "abandon", "begin", "check_key", "finish", "purge", "request_hash"]
