"""Database engines and sessions: SQLite (embedded default, WAL) or PostgreSQL (scale-out).

Services never open or commit sessions; callers do, with ``db.write()`` or ``db.read()``. On SQLite a
write transaction starts with ``BEGIN IMMEDIATE`` so two writers queue on the busy timeout instead of
failing half-way with "database is locked" at their first write.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from .models import expire_after_savepoint_rollback


def make_engine(url: str, *, sqlite_busy_timeout_ms: int = 5000, echo: bool = False, application_name: str = "qmsflow") -> Engine:
    """Create the SQLAlchemy engine for ``url`` with the pragmas and transaction handling qmsflow needs.

    On PostgreSQL, ``application_name`` shows in ``pg_stat_activity``, so an operator can tell the
    web app from each scheduler.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"timeout": sqlite_busy_timeout_ms / 1000})
        _configure_sqlite(engine, sqlite_busy_timeout_ms)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, connect_args={"application_name": application_name})


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (SQLAlchemy's pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # NORMAL is durable across application crashes in WAL mode; only an OS crash or power loss
        # can drop the last commits, never corrupt the database (SQLite docs, "WAL mode").
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode is None:  # Database.glance(): each statement is its own transaction
            return
        # Straight to the driver: through exec_driver_sql this one statement cost a sixth of a
        # short write transaction (see bench/RESULTS.md). echo=True no longer shows the BEGIN.
        connection.connection.driver_connection.execute(f"BEGIN {mode}")


class Database:
    """An engine with two session factories: writers (BEGIN IMMEDIATE on SQLite) and readers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        write_bind = engine.execution_options(sqlite_begin="IMMEDIATE") if self.is_sqlite else engine
        self.write_factory = sessionmaker(bind=write_bind, expire_on_commit=False)
        self.read_factory = sessionmaker(bind=engine, expire_on_commit=False)
        for factory in (self.write_factory, self.read_factory):
            event.listen(factory, "after_soft_rollback", expire_after_savepoint_rollback)
        # One statement needs no transaction around it: no BEGIN, no ROLLBACK, one round trip.
        self._glance_bind = (
            engine.execution_options(sqlite_begin=None) if self.is_sqlite else engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one write transaction: committed on success, rolled back on any error."""
        with self.write_factory.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; anything it changes is rolled back."""
        with self.read_factory() as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def glance(self) -> Iterator[Connection]:
        """A connection for a single read statement, run outside any transaction (e.g. "is anything due?")."""
        with self._glance_bind.connect() as connection:
            yield connection

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


__all__ = ["Database", "make_engine"]
