"""Database engines and sessions: SQLite (embedded default, WAL) or PostgreSQL (scale-out).

Services never open or commit sessions; callers do, with ``db.write()`` or ``db.read()``. On SQLite a
write transaction starts with ``BEGIN IMMEDIATE`` so two writers queue on the busy timeout instead of
failing half-way with "database is locked" at their first write.

Driver errors do not leave ``Database``: a lock that outlasts the busy timeout, a deadlock or a
serialization failure becomes ``DatabaseBusy`` (retryable), a database that cannot be reached or
opened ``DatabaseUnavailable``, a unique violation ``Conflict``, and a period that overlaps another
it must be kept apart from (migration 0007) ``PeriodOverlap``; other errors pass unchanged. The
translation covers the driver-level ``BEGIN IMMEDIATE`` too, which SQLAlchemy never sees.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from .errors import PERIOD_CONSTRAINTS, Conflict, DatabaseBusy, DatabaseUnavailable, PeriodOverlap, QmsflowError
from .models import expire_after_savepoint_rollback

# SQLite primary result codes (sqlite.org/rescode.html); the extended code's low byte is the primary one.
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CANTOPEN, _SQLITE_NOTADB, _SQLITE_CONSTRAINT = 5, 6, 14, 26, 19
_SQLITE_CONSTRAINT_UNIQUE, _SQLITE_CONSTRAINT_PRIMARYKEY, _SQLITE_CONSTRAINT_TRIGGER = 2067, 1555, 1811
# PostgreSQL SQLSTATEs: worth retrying, and "this server or database cannot be used".
_PG_BUSY = {"40001", "40P01", "55P03", "53300", "57014"}
_PG_UNAVAILABLE = {"3D000", "57P01", "57P02", "57P03"}


def _constraint(orig: BaseException | None) -> str:
    return getattr(getattr(orig, "diag", None), "constraint_name", None) or ""


def translate_error(error: BaseException, url: str) -> QmsflowError | None:
    """Return the engine error a driver error stands for, or None when it is none of busy, unavailable, unique.

    ``error`` may be SQLAlchemy's wrapper or the bare driver exception; ``url`` (password hidden) names
    the database in ``DatabaseUnavailable``.
    """
    orig = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    detail = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        message = str(orig).lower()
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in message:
            return DatabaseBusy("sqlite", detail)
        if primary in (_SQLITE_CANTOPEN, _SQLITE_NOTADB) or "unable to open database" in message:
            return DatabaseUnavailable(url, detail)
        if code in (_SQLITE_CONSTRAINT_UNIQUE, _SQLITE_CONSTRAINT_PRIMARYKEY) or "unique constraint failed" in message:
            return Conflict(f"already stored: {detail}", {"constraint": detail})
        # the period triggers of migration 0007 abort with the constraint's name as their message
        if (code == _SQLITE_CONSTRAINT_TRIGGER or primary == _SQLITE_CONSTRAINT) and str(orig).strip() in PERIOD_CONSTRAINTS:
            return PeriodOverlap(str(orig).strip())
        return None
    if type(orig).__module__.split(".")[0] != "psycopg":
        return None
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate == "23505":
        diag = getattr(orig, "diag", None)
        constraint = getattr(diag, "constraint_name", None) or ""
        return Conflict(f"already stored: {detail}", {"constraint": constraint})
    if sqlstate == "23P01" or (sqlstate == "23514" and _constraint(orig) in PERIOD_CONSTRAINTS):
        return PeriodOverlap(_constraint(orig))
    if sqlstate in _PG_BUSY:
        return DatabaseBusy("postgresql", detail)
    if sqlstate in _PG_UNAVAILABLE or (sqlstate or "").startswith(("08", "28")):
        return DatabaseUnavailable(url, detail)
    # psycopg reports a failed connection attempt without a SQLSTATE; so does a connection lost mid-way.
    if sqlstate is None and type(orig).__name__ == "OperationalError":
        return DatabaseUnavailable(url, detail)
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return DatabaseUnavailable(url, detail)
    return None


def make_engine(url: str, *, sqlite_busy_timeout_ms: int = 5000, echo: bool = False, application_name: str = "qmsflow") -> Engine:
    """Create the SQLAlchemy engine for ``url`` with the pragmas and transaction handling qmsflow needs.

    On PostgreSQL, ``application_name`` shows in ``pg_stat_activity``, so an operator can tell the
    web app from each scheduler.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"timeout": sqlite_busy_timeout_ms / 1000})
        _configure_sqlite(engine, sqlite_busy_timeout_ms)
        return engine
    # A server that does not answer is reported after 10 s instead of hanging the command.
    # JIT off: the province's status query (qmsflow/engine/province.py) is one big expression with a
    # hundred correlated subqueries, whose estimated cost passes jit_above_cost; compiling it took 7 s of
    # a 7.2 s dashboard at 5,000 units, and no qmsflow statement runs long enough to win it back
    # (bench/province_pages.py, bench/RESULTS.md).
    return create_engine(
        url, echo=echo, pool_pre_ping=True,
        connect_args={"application_name": application_name, "connect_timeout": 10, "options": "-c jit=off"},
    )


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
        # short write transaction (see bench/RESULTS.md). echo=True no longer shows the BEGIN, and
        # SQLAlchemy does not wrap its errors, so they are translated here.
        try:
            connection.connection.driver_connection.execute(f"BEGIN {mode}")
        except sqlite3.Error as exc:
            translated = translate_error(exc, _safe_url(connection.engine))
            if translated is None:
                raise
            raise translated from exc


def _safe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


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

    @property
    def safe_url(self) -> str:
        """The database URL with any password hidden, for messages and logs."""
        return _safe_url(self.engine)

    @contextmanager
    def translated(self) -> Iterator[None]:
        """Raise busy, unavailable and unique-violation driver errors as the engine's typed errors."""
        try:
            yield
        except (sa_exc.DBAPIError, sqlite3.Error) as exc:
            translated = translate_error(exc, self.safe_url)
            if translated is None:
                raise
            raise translated from exc

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one write transaction: committed on success, rolled back on any error."""
        with self.translated(), self.write_factory.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; anything it changes is rolled back."""
        with self.translated(), self.read_factory() as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def glance(self) -> Iterator[Connection]:
        """A connection for a single read statement, run outside any transaction (e.g. "is anything due?")."""
        with self.translated(), self._glance_bind.connect() as connection:
            yield connection

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


__all__ = ["Database", "make_engine", "translate_error"]
