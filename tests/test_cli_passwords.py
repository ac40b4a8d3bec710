"""`qmsflow users set-password` reads the password from standard input; `users unlock` lifts a sign-in lock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from click.testing import Result
from sqlalchemy import select

from qmsflow.engine import FixedClock, Runtime
from qmsflow.engine.db import Database
from qmsflow.engine.models import AdminLogEntry, User
from qmsflow.engine.signin import sign_in
from qmsflow.engine.users import check_password


def _user(db: Database, username: str) -> User:
    with db.read() as session:
        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        session.expunge(user)
        return user


def test_set_password_reads_standard_input_ends_sessions_and_is_logged(run: Callable[..., Result], db: Database) -> None:
    assert run("init").exit_code == 0
    assert run("users", "create", "first.admin", "--role", "admin").exit_code == 0
    result = run("users", "set-password", "first.admin", input="một mật khẩu thật dài\n")
    assert result.exit_code == 0, result.output
    user = _user(db, "first.admin")
    assert check_password(user, "một mật khẩu thật dài") and user.session_epoch == 1 and not user.must_change_password
    with db.read() as session:
        assert session.scalar(select(AdminLogEntry.action).order_by(AdminLogEntry.seq.desc()).limit(1)) == "user.set_password"


def test_set_password_refuses_a_short_password_and_an_unknown_user(run: Callable[..., Result], db: Database) -> None:
    assert run("init").exit_code == 0
    assert run("users", "create", "first.admin", "--role", "admin").exit_code == 0
    short = run("users", "set-password", "first.admin", input="short\n")
    assert short.exit_code == 2 and "at least 10 characters" in short.output
    assert _user(db, "first.admin").password_hash is None
    assert run("users", "set-password", "nobody", input="long enough password\n").exit_code == 4


def test_unlock_lifts_a_lock(run: Callable[..., Result], db: Database, rt: Runtime, clock: FixedClock) -> None:
    assert run("init").exit_code == 0
    clock.set(datetime.now(UTC))  # the command runs on the wall clock: lock for its "now"
    with db.write() as session:
        for _ in range(5):
            sign_in(session, rt, "someone", "wrong", "127.0.0.1")
    result = run("users", "unlock", "someone")
    assert result.exit_code == 0 and "unlocked" in result.output
    assert "was not locked" in run("users", "unlock", "someone").output
