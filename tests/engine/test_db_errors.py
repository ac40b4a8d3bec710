"""Driver errors never leave ``Database`` raw: busy, unavailable and unique violations are typed engine errors."""

from __future__ import annotations

import socket
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url

from qmsflow.engine import SYSTEM, Conflict, Database, DatabaseBusy, DatabaseUnavailable, Runtime, make_engine
from qmsflow.engine.models import Unit, User
from qmsflow.engine.units import UnitKind, create_unit
from tests.conftest import local


def _user_row(name: str) -> dict[str, object]:
    return {"username": name, "role": "viewer", "created_at": local(date(2026, 1, 5))}


def test_a_unique_violation_is_a_conflict_and_nothing_is_written(db: Database) -> None:
    with db.write() as session:
        session.execute(insert(User).values(_user_row("dup")))
    with pytest.raises(Conflict) as caught:
        with db.write() as session:
            session.execute(insert(User).values(_user_row("other")))
            session.execute(insert(User).values(_user_row("dup")))
    assert "already stored" in str(caught.value)
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1  # "other" was rolled back too


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sqlite_busy_at_begin_immediate_is_database_busy_and_the_database_recovers(tmp_path: Path, sqlite_template: Path) -> None:
    # Regression: BEGIN IMMEDIATE went straight to the driver and escaped as a bare sqlite3.OperationalError.
    path = tmp_path / "busy.sqlite3"
    path.write_bytes(sqlite_template.read_bytes())
    db = Database(make_engine(f"sqlite:///{path}", sqlite_busy_timeout_ms=50))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a second connection holds the write lock
    try:
        with pytest.raises(DatabaseBusy) as caught:
            with db.write() as session:
                session.execute(insert(User).values(_user_row("blocked")))
        assert caught.value.backend == "sqlite" and caught.value.retryable
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with db.write() as session:  # once the lock is released the same Database writes again
        session.execute(insert(User).values(_user_row("after")))
    with db.read() as session:
        assert session.scalars(select(User.username)).all() == ["after"]
    db.dispose()


def test_postgresql_lock_timeout_is_database_busy(pg_db: Database, rt: Runtime) -> None:
    with pg_db.write() as session:
        create_unit(session, code="X", name="X", kind=UnitKind.DEPARTMENT.value, valid_from=date(2025, 7, 1), rt=rt, actor=SYSTEM)
    holder = pg_db.engine.connect()
    holder.execute(text("SELECT id FROM units FOR UPDATE"))  # holds the row lock in an open transaction
    try:
        with pytest.raises(DatabaseBusy) as caught:
            with pg_db.write() as session:
                session.execute(text("SET LOCAL lock_timeout = '50ms'"))
                session.execute(select(Unit).with_for_update())
        assert caught.value.backend == "postgresql"
    finally:
        holder.rollback()
        holder.close()


def test_a_sqlite_file_that_cannot_be_opened_is_database_unavailable(tmp_path: Path) -> None:
    db = Database(make_engine(f"sqlite:///{tmp_path / 'no-such-folder' / 'x.sqlite3'}"))
    with pytest.raises(DatabaseUnavailable) as caught:
        with db.read() as session:
            session.execute(text("SELECT 1"))
    assert "no-such-folder" in caught.value.url


def test_a_closed_postgresql_port_is_database_unavailable() -> None:
    db = Database(make_engine(f"postgresql+psycopg://postgres:secret@127.0.0.1:{_closed_port()}/qmsflow"))
    for use in (db.read, db.write):
        with pytest.raises(DatabaseUnavailable) as caught:
            with use() as session:
                session.execute(text("SELECT 1"))
        assert "secret" not in str(caught.value)  # the password never reaches a message
    with pytest.raises(DatabaseUnavailable):
        with db.glance() as connection:
            connection.execute(text("SELECT 1"))
    db.dispose()


def test_a_postgresql_database_that_does_not_exist_is_database_unavailable(pg_db: Database) -> None:
    url = make_url(pg_db.engine.url.render_as_string(hide_password=False)).set(database="qmsflow_no_such_database")
    db = Database(make_engine(url.render_as_string(hide_password=False)))
    with pytest.raises(DatabaseUnavailable) as caught:
        with db.read() as session:
            session.execute(text("SELECT 1"))
    assert "qmsflow_no_such_database" in str(caught.value)
    db.dispose()
