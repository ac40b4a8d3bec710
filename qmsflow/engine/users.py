"""Users and passwords (argon2)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from . import adminlog
from .definitions import Role
from .errors import Conflict, FieldProblem, NotFound, ValidationFailed
from .models import Unit, User
from .permissions import Actor, AdminArea, require_admin
from .runtime import Runtime

USER_ROLES = (Role.ADMIN, Role.LEAD, Role.SUPERVISOR, Role.UNIT_OFFICER, Role.VIEWER)
SCOPED_ROLES = (Role.SUPERVISOR, Role.UNIT_OFFICER)
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
PASSWORD_MIN = 10
PASSWORD_MAX = 256  # hashing is deliberately slow: a megabyte "password" must not be hashed at all
# One-time passwords: no 0/O, 1/l/I, so one read aloud over the phone is typed right the first time.
_ONE_TIME_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_hasher = PasswordHasher()


def create_user(
    session: Session,
    *,
    username: str,
    role: str,
    now: datetime,
    unit: Unit | None = None,
    full_name: str = "",
    email: str | None = None,
    password: str | None = None,
    rt: Runtime,
    actor: Actor,
) -> User:
    """Create a user; supervisors and unit officers need a unit, the others may have one. Logged."""
    problems = []
    if not _USERNAME.match(username or ""):
        problems.append(FieldProblem("username", "2-64 characters: lower-case letters, digits, . _ -", "username_format"))
    problems += _profile_problems(role, unit, email)
    if password is not None:
        problems += _password_problems(password)
    if problems:
        raise ValidationFailed(problems)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists", {"field": "username", "code": "username_taken"})
    user = User(
        username=username,
        role=role,
        unit_id=unit.id if unit else None,
        full_name=full_name,
        email=email,
        password_hash=_hasher.hash(password) if password else None,
        active=True,
        created_at=now,
    )
    session.add(user)
    session.flush()
    adminlog.record(
        session, rt.history_key, actor, at=now, action="user.create", object_kind="user", object_id=user.id,
        before=None, after=_user_state(user),
    )
    return user


def _profile_problems(role: str, unit: Unit | None, email: str | None) -> list[FieldProblem]:
    problems = []
    if role not in {r.value for r in USER_ROLES}:
        problems.append(FieldProblem("role", f"one of {[r.value for r in USER_ROLES]}", "role_unknown"))
    elif Role(role) in SCOPED_ROLES and unit is None:
        problems.append(FieldProblem("unit", f"a {role} needs a unit", "unit_required"))
    if email is not None and "@" not in email:
        problems.append(FieldProblem("email", f"{email!r} is not an email address", "email_format"))
    return problems


def _password_problems(password: str, field: str = "password") -> list[FieldProblem]:
    if len(password) < PASSWORD_MIN:
        return [FieldProblem(field, f"at least {PASSWORD_MIN} characters", "password_too_short")]
    if len(password) > PASSWORD_MAX:
        return [FieldProblem(field, f"at most {PASSWORD_MAX} characters", "password_too_long")]
    return []


def _user_state(user: User) -> dict[str, object]:
    # never the hash: only whether a password is set
    return {
        "username": user.username, "full_name": user.full_name, "email": user.email, "role": user.role,
        "unit_id": user.unit_id, "active": user.active, "password": "set" if user.password_hash else None,
    }


def user_by_id(session: Session, actor: Actor, user_id: int) -> User:
    """Return any user (active or not) by id, for an administrator of users; NotFound otherwise."""
    require_admin(actor, AdminArea.USERS)
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user", user_id)
    return user


@dataclass(frozen=True)
class UserPage:
    """A page of the user list and the total count."""

    users: list[User]
    total: int


def list_users(session: Session, actor: Actor, *, offset: int = 0, limit: int = 50) -> UserPage:
    """Return users by username, a page at a time, for an administrator of users (two statements)."""
    require_admin(actor, AdminArea.USERS)
    if offset < 0 or not 1 <= limit <= 500:
        raise ValidationFailed([FieldProblem("page", "offset >= 0 and 1 to 500 a page", "page_out_of_range")])
    rows = list(session.scalars(select(User).options(selectinload(User.unit)).order_by(User.username).offset(offset).limit(limit)))
    return UserPage(rows, int(session.scalar(select(func.count(User.id))) or 0))


def update_user(
    session: Session,
    user: User,
    *,
    full_name: str,
    email: str | None,
    role: str,
    unit: Unit | None,
    now: datetime,
    rt: Runtime,
    actor: Actor,
) -> bool:
    """Change a user's full name, email, role and unit; logged when anything changed. Return whether it did."""
    require_admin(actor, AdminArea.USERS)
    problems = _profile_problems(role, unit, email)
    if len(full_name) > 255:
        problems.append(FieldProblem("full_name", "at most 255 characters", "too_long"))
    if problems:
        raise ValidationFailed(problems)
    before = _user_state(user)
    user.full_name, user.email, user.role, user.unit_id = full_name, email, role, unit.id if unit else None
    after = _user_state(user)
    if not adminlog.changed(before, after):
        return False
    session.flush()
    adminlog.record(session, rt.history_key, actor, at=now, action="user.update", object_kind="user", object_id=user.id,
                    before=before, after=after)
    return True


def deactivate_user(session: Session, user: User, *, now: datetime, rt: Runtime, actor: Actor) -> None:
    """Deactivate a user: they can no longer sign in and every session of theirs ends. Logged."""
    require_admin(actor, AdminArea.USERS)
    if user.username == actor.username:
        raise ValidationFailed([FieldProblem("user", "an administrator cannot deactivate themselves", "deactivate_self")])
    if not user.active:
        return
    before = _user_state(user)
    user.active = False
    user.session_epoch += 1
    session.flush()
    adminlog.record(session, rt.history_key, actor, at=now, action="user.deactivate", object_kind="user", object_id=user.id,
                    before=before, after=_user_state(user))


def reset_password(session: Session, user: User, *, now: datetime, rt: Runtime, actor: Actor) -> str:
    """Give an active user a one-time password, to be changed at the next sign-in; end their sessions. Logged.

    Returns the password, which is stored only as its hash: the caller shows it once.
    """
    require_admin(actor, AdminArea.USERS)
    if not user.active:
        raise ValidationFailed([FieldProblem("user", "the user is deactivated", "user_inactive")])
    password = "-".join("".join(secrets.choice(_ONE_TIME_ALPHABET) for _ in range(4)) for _ in range(4))
    before = _user_state(user)
    _store_password(user, password, must_change=True)
    session.flush()
    adminlog.record(session, rt.history_key, actor, at=now, action="user.reset_password", object_kind="user", object_id=user.id,
                    before=before, after=_user_state(user) | {"password": "one-time"})
    return password


def set_password(session: Session, user: User, password: str, *, now: datetime, rt: Runtime, actor: Actor) -> None:
    """Set a user's password as an administrator (the console's ``users set-password``); ends their sessions. Logged."""
    require_admin(actor, AdminArea.USERS)
    problems = _password_problems(password)
    if problems:
        raise ValidationFailed(problems)
    before = _user_state(user)
    _store_password(user, password, must_change=False)
    session.flush()
    adminlog.record(session, rt.history_key, actor, at=now, action="user.set_password", object_kind="user", object_id=user.id,
                    before=before, after=_user_state(user))


def change_password(
    session: Session, user: User, *, current: str, new: str, now: datetime, rt: Runtime
) -> None:
    """Change one's own password (the current one must match); ends one's other sessions. Logged as the user.

    The caller keeps its own session by taking up ``user.session_epoch`` afterwards.
    """
    problems = [] if check_password(user, current) else [FieldProblem("current_password", "not your current password", "password_wrong")]
    problems += _password_problems(new, "new_password")
    if not problems and new == current:
        problems.append(FieldProblem("new_password", "the same as the current one", "password_unchanged"))
    if problems:
        raise ValidationFailed(problems)
    before = _user_state(user)
    _store_password(user, new, must_change=False)
    session.flush()
    adminlog.record(session, rt.history_key, Actor.of(user), at=now, action="user.change_password", object_kind="user",
                    object_id=user.id, before=before, after=_user_state(user))


def _store_password(user: User, password: str, *, must_change: bool) -> None:
    user.password_hash = _hasher.hash(password)
    user.must_change_password = must_change
    user.session_epoch += 1


def user_by_name(session: Session, username: str) -> User:
    """Return the active user called ``username``; raise NotFound otherwise."""
    user = session.scalar(select(User).where(User.username == username, User.active.is_(True)))
    if user is None:
        raise NotFound("user", username)
    return user


def check_password(user: User, password: str) -> bool:
    """Return whether ``password`` is the user's; a user with no password never matches."""
    if not user.password_hash or len(password) > PASSWORD_MAX:
        return False
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_no_password(password: str) -> None:
    """Spend the time a password check takes, for a username that has no account (so timing tells nothing)."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
    try:
        _hasher.verify(_DUMMY_HASH, password[:PASSWORD_MAX])
    except (VerificationError, InvalidHashError):
        pass


_DUMMY_HASH: str | None = None


__all__ = [
    "PASSWORD_MAX",
    "PASSWORD_MIN",
    "SCOPED_ROLES",
    "USER_ROLES",
    "UserPage",
    "change_password",
    "check_no_password",
    "check_password",
    "create_user",
    "deactivate_user",
    "list_users",
    "reset_password",
    "set_password",
    "update_user",
    "user_by_id",
    "user_by_name",
]
