"""Signing in: the password check behind a throttle counted in the database.

Failures are rows (``sign_in_failures``), so every web process counts the same ones: 5 failures
for one username within 15 minutes lock that username for 15 minutes (a ``sign_in_locks`` row),
whether or not an account has that name, so the answer never tells which names exist; 50 failures
from one client address within 15 minutes refuse that address until the oldest of them is 15
minutes old. A locked or refused attempt does not check the password and is not counted. A
successful sign-in, or an administrator's unlock, clears the username's failures.

``sign_in`` returns its outcome instead of raising, because the failure it records must be
committed: the caller commits the transaction either way.

Two processes counting the 4th and 5th failure at the same instant on PostgreSQL may each see 4 and
not lock; the next failure then sees 6 and locks. The limit can be passed by one attempt, never more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from . import adminlog
from .errors import TooManyAttempts
from .models import SignInFailure, SignInLock, User
from .permissions import Actor, AdminArea, require_admin
from .runtime import Runtime
from .users import check_no_password, check_password

USERNAME_LIMIT = 5
ADDRESS_LIMIT = 50
WINDOW = timedelta(minutes=15)
LOCK_FOR = timedelta(minutes=15)


@dataclass(frozen=True)
class SignInOutcome:
    """What a sign-in attempt came to: the user signed in, or why not (and until when, when throttled)."""

    user: User | None
    refused: TooManyAttempts | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the attempt signed the user in."""
        return self.user is not None


def normalise(username: str) -> str:
    """The form a typed username is counted under: trimmed, lower case, at most 64 characters."""
    return username.strip().lower()[:64]


def sign_in(session: Session, rt: Runtime, username: str, password: str, client_address: str) -> SignInOutcome:
    """Check ``username`` and ``password`` from ``client_address`` behind the throttle; record a failure."""
    now = rt.clock.now()
    name, address = normalise(username), client_address[:64]
    refused = _address_refusal(session, address, now) or _username_lock(session, name, now)
    if refused is not None:
        return SignInOutcome(None, refused)
    user = session.scalar(select(User).where(User.username == name, User.active.is_(True)))
    if user is None:
        check_no_password(password)
    elif check_password(user, password):
        session.execute(delete(SignInFailure).where(SignInFailure.username == name))
        return SignInOutcome(user)
    session.execute(delete(SignInFailure).where(SignInFailure.at < now - WINDOW))
    session.add(SignInFailure(at=now, username=name, client_address=address))
    session.flush()
    recent = session.scalar(
        select(func.count(SignInFailure.id)).where(SignInFailure.username == name, SignInFailure.at > now - WINDOW)
    )
    if (recent or 0) >= USERNAME_LIMIT:
        until = now + LOCK_FOR
        existing = session.get(SignInLock, name)
        if existing is None:
            session.add(SignInLock(username=name, locked_at=now, locked_until=until))
        else:
            existing.locked_at, existing.locked_until = now, until
        session.flush()
        return SignInOutcome(None, TooManyAttempts("username", until))
    return SignInOutcome(None)


def _username_lock(session: Session, name: str, now: datetime) -> TooManyAttempts | None:
    lock = session.get(SignInLock, name)
    if lock is None or lock.locked_until <= now:
        return None
    return TooManyAttempts("username", lock.locked_until)


def _address_refusal(session: Session, address: str, now: datetime) -> TooManyAttempts | None:
    window = (
        select(SignInFailure.at)
        .where(SignInFailure.client_address == address, SignInFailure.at > now - WINDOW)
        .order_by(SignInFailure.at.desc())
        .offset(ADDRESS_LIMIT - 1)
        .limit(1)
    )
    oldest_counted = session.scalar(window)
    if oldest_counted is None:
        return None
    return TooManyAttempts("address", oldest_counted + WINDOW)


def locks(session: Session, usernames: Iterable[str], now: datetime) -> dict[str, datetime]:
    """Return the usernames among ``usernames`` locked at ``now``, with the instant each lock ends."""
    names = [normalise(n) for n in usernames]
    if not names:
        return {}
    rows = session.execute(
        select(SignInLock.username, SignInLock.locked_until).where(SignInLock.username.in_(names), SignInLock.locked_until > now)
    )
    return {name: until for name, until in rows.tuples()}


def unlock(session: Session, rt: Runtime, actor: Actor, username: str) -> bool:
    """Lift a username's lock and forget its failures, as an administrator of users; logged. Return whether it was locked."""
    require_admin(actor, AdminArea.USERS)
    now = rt.clock.now()
    name = normalise(username)
    lock = session.get(SignInLock, name)
    was_locked = lock is not None and lock.locked_until > now
    session.execute(delete(SignInFailure).where(SignInFailure.username == name))
    if lock is None:
        return False
    before = {"username": name, "locked_until": lock.locked_until.isoformat()}
    session.delete(lock)
    session.flush()
    adminlog.record(session, rt.history_key, actor, at=now, action="user.unlock", object_kind="sign_in", object_id=name,
                    before=before, after=None)
    return was_locked


__all__ = ["ADDRESS_LIMIT", "LOCK_FOR", "USERNAME_LIMIT", "WINDOW", "SignInOutcome", "locks", "normalise", "sign_in", "unlock"]
