"""API bearer tokens: made, listed and revoked by their user or an administrator; checked per request.

A token is ``qmsf_`` and 43 random URL-safe characters. Only its SHA-256 is stored (an argon2 hash
per request would cost more than the transition it guards), with its first characters
(``prefix``) so lists and logs can name it. It acts as its user, with the user's role and scope,
and stops working when revoked, when it expires, or when its user is deactivated: each request
reads the token and the user in one statement. Creating and revoking are in the admin log.

The rate limit is counted per token per minute in ``api_rate_windows`` (one upsert per request),
so it holds across every web process on the database.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import adminlog
from .errors import FieldProblem, InvalidToken, NotFound, NotPermitted, RateLimited, ValidationFailed
from .models import ApiRateWindow, ApiToken, User
from .permissions import Actor, AdminArea, may_administer
from .runtime import Runtime

TOKEN_PREFIX = "qmsf_"
PREFIX_LENGTH = 12  # "qmsf_" and 7 characters: enough to tell tokens apart in a list, useless to guess
MAX_NAME = 100
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per token


def hash_token(secret: str) -> str:
    """Return the stored form of a token: its SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Authenticated:
    """Who a valid token acts as."""

    token_id: int
    actor: Actor
    user_id: int
    language: str
    stale_use: bool = False  # its last use is older than TOUCH_EVERY: a write is due


def _state(token: ApiToken) -> dict[str, object]:
    return {
        "user_id": token.user_id, "name": token.name, "prefix": token.prefix,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


def _may_manage(actor: Actor, user: User) -> bool:
    return actor.username == user.username or may_administer(actor, AdminArea.TOKENS)


def create_token(
    session: Session, rt: Runtime, actor: Actor, user: User, *, name: str = "", expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Make a token for ``user`` (the actor's own, or anyone's for an administrator). Logged.

    Returns the row and the token itself, which is stored only as its hash: the caller shows it once.
    """
    if not _may_manage(actor, user):
        raise NotPermitted(actor.username, f"make a token for {user.username}")
    now = rt.clock.now()
    name = (name or "").strip()
    problems = []
    if len(name) > MAX_NAME:
        problems.append(FieldProblem("name", "max_length", {"n": MAX_NAME}))
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
        problems.append(FieldProblem("expires", "expiry_passed" if expires_at.tzinfo else "aware_instant", {"now": now.isoformat()}))
    if not user.active:
        problems.append(FieldProblem("user", "user_inactive"))
    if problems:
        raise ValidationFailed(problems)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id, name=name, prefix=secret[:PREFIX_LENGTH], token_hash=hash_token(secret), created_at=now,
        created_by=actor.username, expires_at=expires_at, last_used_at=None, revoked_at=None,
    )
    session.add(token)
    session.flush()
    adminlog.record(session, rt.history_key, actor, at=now, action="token.create", object_kind="token", object_id=token.id,
                    before=None, after=_state(token))
    return token, secret


def list_tokens(session: Session, actor: Actor, *, user_id: int | None = None) -> list[tuple[ApiToken, str]]:
    """Return the tokens the actor may manage (their own; everyone's for an administrator), newest first, with usernames."""
    query = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id.desc())
    if not may_administer(actor, AdminArea.TOKENS):
        query = query.where(User.username == actor.username)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return [(token, username) for token, username in session.execute(query).tuples()]


def get_token(session: Session, actor: Actor, token_id: int) -> ApiToken:
    """Return a token the actor may manage; NotFound otherwise (someone else's token is not found, not forbidden)."""
    row = session.execute(select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(ApiToken.id == token_id)).first()
    if row is None or not _may_manage(actor, row[1]):
        raise NotFound("token", token_id)
    return row[0]


def revoke_token(session: Session, rt: Runtime, actor: Actor, token_id: int) -> bool:
    """Revoke a token now (its user's or an administrator's act). Logged. Returns False if it already was."""
    token = get_token(session, actor, token_id)
    if token.revoked_at is not None:
        return False
    before = _state(token)
    token.revoked_at = rt.clock.now()
    session.flush()
    adminlog.record(session, rt.history_key, actor, at=token.revoked_at, action="token.revoke", object_kind="token",
                    object_id=token.id, before=before, after=_state(token))
    return True


_BY_HASH = (
    select(ApiToken.id, ApiToken.expires_at, ApiToken.revoked_at, ApiToken.last_used_at, User.id, User.username, User.role,
           User.unit_id, User.active, User.language)
    .join(User, User.id == ApiToken.user_id)
)


def authenticate(session: Session, secret: str, now: datetime, *, touch: bool = True) -> Authenticated:
    """Return who ``secret`` acts as; InvalidToken when it is unknown, revoked, expired or its user inactive.

    Marks the token used (at most once a minute, so a busy client does not write on every request);
    ``touch=False`` only reads, and ``Authenticated.stale_use`` then says whether a write is due.
    """
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        raise InvalidToken("unknown")
    row = session.execute(_BY_HASH.where(ApiToken.token_hash == hash_token(secret))).first()
    if row is None:
        raise InvalidToken("unknown")
    token_id, expires_at, revoked_at, last_used, user_id, username, role, unit_id, active, language = row
    if revoked_at is not None:
        raise InvalidToken("revoked")
    if expires_at is not None and expires_at <= now:
        raise InvalidToken("expired")
    if not active:
        raise InvalidToken("inactive_user")
    stale_use = last_used is None or now - last_used >= TOUCH_EVERY
    if stale_use and touch:
        mark_used(session, token_id, now)
    from .definitions import Role

    return Authenticated(token_id, Actor(username=username, role=Role(role), unit_id=unit_id), user_id, language, stale_use)


def mark_used(session: Session, token_id: int, now: datetime) -> None:
    """Record that the token was used at ``now``."""
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))


def count_request(session: Session, token_id: int, now: datetime, limit: int) -> int:
    """Count one request of the token in the current minute; RateLimited beyond ``limit`` (0: no limit).

    Returns the requests left in this minute. One upsert on either backend; windows older than the
    previous minute are deleted by the first request of each new minute.
    """
    if limit <= 0:
        return -1
    window = now.replace(second=0, microsecond=0)
    dialect = session.get_bind().dialect.name
    maker = postgresql.insert if dialect == "postgresql" else sqlite.insert
    insert = maker(ApiRateWindow).values(token_id=token_id, window_start=window, count=1)
    upsert = insert.on_conflict_do_update(
        index_elements=["token_id", "window_start"], set_={"count": ApiRateWindow.count + 1}
    ).returning(ApiRateWindow.count)
    count = int(session.execute(upsert).scalar_one())
    if count == 1:
        session.execute(delete(ApiRateWindow).where(ApiRateWindow.token_id == token_id, ApiRateWindow.window_start < window))
    if count > limit:
        raise RateLimited(limit, max(1, 60 - now.second))
    return limit - count


__all__ = [
    "PREFIX_LENGTH",
    "TOKEN_PREFIX",
    "Authenticated",
    "authenticate",
    "count_request",
    "create_token",
    "get_token",
    "hash_token",
    "list_tokens",
    "mark_used",
    "revoke_token",
]
