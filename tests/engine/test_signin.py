"""The sign-in throttle and the password services, without the web: counted in the database, logged."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from qmsflow.engine import FixedClock, NotPermitted, Runtime, ValidationFailed
from qmsflow.engine.db import Database
from qmsflow.engine.models import AdminLogEntry, SignInFailure, User
from qmsflow.engine.permissions import CONSOLE
from qmsflow.engine.signin import LOCK_FOR, locks, sign_in, unlock
from qmsflow.engine.users import change_password, reset_password, set_password
from tests.conftest import Province

PASSWORD = "a long enough password"


@pytest.fixture
def with_password(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> None:
    with db.write() as session:
        tnh = session.scalar(select(User).where(User.username == "tnh"))
        assert tnh is not None
        set_password(session, tnh, PASSWORD, now=clock.now(), rt=rt, actor=CONSOLE)


def _attempt(db: Database, rt: Runtime, username: str, password: str, address: str = "192.0.2.1"):
    with db.write() as session:
        outcome = sign_in(session, rt, username, password, address)
        return outcome.succeeded, outcome.refused


def test_the_fifth_failure_within_the_window_locks_and_older_ones_do_not_count(
    db: Database, rt: Runtime, clock: FixedClock, with_password: None
) -> None:
    for _ in range(4):
        assert _attempt(db, rt, "tnh", "wrong") == (False, None)
    clock.advance(timedelta(minutes=15, seconds=1))  # the four slide out of the window
    for _ in range(4):
        assert _attempt(db, rt, "tnh", "wrong") == (False, None)
    succeeded, refused = _attempt(db, rt, "tnh", "wrong")
    assert not succeeded and refused is not None and (refused.by, refused.until) == ("username", clock.now() + LOCK_FOR)
    succeeded, refused = _attempt(db, rt, "tnh", PASSWORD)  # the right password, but locked: not even checked
    assert not succeeded and refused is not None
    with db.read() as session:
        assert session.scalar(select(func.count(SignInFailure.id))) == 5  # refused attempts are not counted
        assert locks(session, ["tnh", "lead"], clock.now()) == {"tnh": clock.now() + LOCK_FOR}


def test_a_success_clears_the_usernames_failures(db: Database, rt: Runtime, with_password: None) -> None:
    for _ in range(4):
        _attempt(db, rt, "tnh", "wrong")
    assert _attempt(db, rt, "TNH ", PASSWORD) == (True, None)
    for _ in range(4):
        assert _attempt(db, rt, "tnh", "wrong") == (False, None)


def test_unlock_is_for_administrators_and_is_logged(db: Database, rt: Runtime, province: Province, with_password: None) -> None:
    for _ in range(5):
        _attempt(db, rt, "tnh", "wrong")
    with pytest.raises(NotPermitted), db.write() as session:
        unlock(session, rt, province.actors["lead"], "tnh")
    with db.write() as session:
        assert unlock(session, rt, province.actors["admin"], "tnh") is True
    with db.read() as session:
        entry = session.scalar(select(AdminLogEntry).order_by(AdminLogEntry.seq.desc()).limit(1))
        assert entry is not None and (entry.action, entry.actor, entry.object_id) == ("user.unlock", "admin", "tnh")
    assert _attempt(db, rt, "tnh", PASSWORD) == (True, None)


def test_a_reset_gives_a_one_time_password_and_raises_the_epoch(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, with_password: None
) -> None:
    with db.write() as session:
        tnh = session.scalar(select(User).where(User.username == "tnh"))
        assert tnh is not None
        epoch = tnh.session_epoch
        with pytest.raises(NotPermitted):
            reset_password(session, tnh, now=clock.now(), rt=rt, actor=province.actors["lead"])
        issued = reset_password(session, tnh, now=clock.now(), rt=rt, actor=province.actors["admin"])
        assert len(issued) == 19 and tnh.must_change_password and tnh.session_epoch == epoch + 1
    assert _attempt(db, rt, "tnh", PASSWORD) == (False, None)
    assert _attempt(db, rt, "tnh", issued)[0]
    with db.write() as session:
        tnh = session.scalar(select(User).where(User.username == "tnh"))
        assert tnh is not None
        with pytest.raises(ValidationFailed) as refused:
            change_password(session, tnh, current="not it", new=issued, now=clock.now(), rt=rt)
        assert {(p.field, p.code) for p in refused.value.problems} == {("current_password", "password_wrong")}
        change_password(session, tnh, current=issued, new="my very own password", now=clock.now(), rt=rt)
        assert not tnh.must_change_password


def test_outside_the_tests_passwords_are_hashed_at_argon2s_standard_cost() -> None:
    """tests/conftest.py swaps in a cheap hasher for speed; the product's own must stay the library's standard."""
    from argon2 import PasswordHasher

    from qmsflow.engine import users
    from tests.conftest import PRODUCTION_HASHER

    standard = PasswordHasher()
    assert (PRODUCTION_HASHER.time_cost, PRODUCTION_HASHER.memory_cost, PRODUCTION_HASHER.parallelism) == (
        standard.time_cost, standard.memory_cost, standard.parallelism,
    )
    assert standard.memory_cost >= 65536  # RFC 9106's low-memory profile, 64 MiB
    assert users._hasher is not PRODUCTION_HASHER and users._hasher.time_cost == 1  # the swap held for this run
