"""Users and passwords (argon2)."""

from __future__ import annotations

import re
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import adminlog
from .definitions import Role
from .errors import Conflict, FieldProblem, NotFound, ValidationFailed
from .language import DEFAULT_LANGUAGE, LANGUAGES
from .models import Unit, User
from .permissions import Actor
from .runtime import Runtime

USER_ROLES = (Role.ADMIN, Role.LEAD, Role.SUPERVISOR, Role.UNIT_OFFICER, Role.VIEWER)
SCOPED_ROLES = (Role.SUPERVISOR, Role.UNIT_OFFICER)
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
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
    language: str = DEFAULT_LANGUAGE,
    rt: Runtime,
    actor: Actor,
) -> User:
    """Create a user; supervisors and unit officers need a unit, the others may have one. Logged.

    ``language`` (``vi`` or ``en``) is what the user's notifications, digests and inbox are written in.
    """
    problems = []
    if not _USERNAME.match(username or ""):
        problems.append(FieldProblem("username", "username_format"))
    if role not in {r.value for r in USER_ROLES}:
        problems.append(FieldProblem("role", "one_of", {"choices": [r.value for r in USER_ROLES]}))
    elif Role(role) in SCOPED_ROLES and unit is None:
        problems.append(FieldProblem("unit", "unit_needed", {"role": role}))
    if email is not None and "@" not in email:
        problems.append(FieldProblem("email", "not_an_email", {"value": repr(email)}))
    if password is not None and len(password) < 10:
        problems.append(FieldProblem("password", "min_length", {"n": 10}))
    if language not in LANGUAGES:
        problems.append(FieldProblem("language", "one_of", {"choices": list(LANGUAGES)}))
    if problems:
        raise ValidationFailed(problems)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    user = User(
        username=username,
        role=role,
        unit_id=unit.id if unit else None,
        full_name=full_name,
        email=email,
        password_hash=_hasher.hash(password) if password else None,
        active=True,
        created_at=now,
        language=language,
    )
    session.add(user)
    session.flush()
    adminlog.record(
        session, rt.history_key, actor, at=now, action="user.create", object_kind="user", object_id=user.id,
        before=None, after=_user_state(user),
    )
    return user


def _user_state(user: User) -> dict[str, object]:
    # never the hash: only whether a password is set
    return {
        "username": user.username, "full_name": user.full_name, "email": user.email, "role": user.role,
        "unit_id": user.unit_id, "active": user.active, "password": "set" if user.password_hash else None,
        "language": user.language,
    }


def set_language(session: Session, user: User, language: str, *, rt: Runtime, actor: Actor) -> User:
    """Set the language the user reads qmsflow's messages in (``vi`` or ``en``). Logged when it changes."""
    if language not in LANGUAGES:
        raise ValidationFailed([FieldProblem("language", "one_of", {"choices": list(LANGUAGES)})])
    if user.language != language:
        before = _user_state(user)
        user.language = language
        session.flush()
        adminlog.record(
            session, rt.history_key, actor, at=rt.clock.now(), action="user.set_language", object_kind="user",
            object_id=user.id, before=before, after=_user_state(user),
        )
    return user


def user_by_name(session: Session, username: str) -> User:
    """Return the active user called ``username``; raise NotFound otherwise."""
    user = session.scalar(select(User).where(User.username == username, User.active.is_(True)))
    if user is None:
        raise NotFound("user", username)
    return user


def check_password(user: User, password: str) -> bool:
    """Return whether ``password`` is the user's; a user with no password never matches."""
    if not user.password_hash:
        return False
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


__all__ = ["SCOPED_ROLES", "USER_ROLES", "check_password", "create_user", "set_language", "user_by_name"]
