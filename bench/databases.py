"""Scratch databases: a SQLite file in the run's folder, or a PostgreSQL database created and dropped.

Every benchmark makes its own databases and removes them, so a run leaves nothing behind. SQLite runs
in WAL mode with ``synchronous=NORMAL``, the setting qmsflow ships (``qmsflow.engine.db``): in WAL mode
a commit survives an application crash; only an OS crash or power loss can drop the last commits,
and none can corrupt the file. FULL would add an fsync per commit, OFF would not survive a crash.
PostgreSQL keeps the server's defaults (``synchronous_commit=on``: an fsync of the WAL per commit).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from qmsflow.bootstrap import upgrade
from qmsflow.engine import calendar_store
from qmsflow.engine.db import Database, make_engine

from .world import runtime

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON", "PRAGMA busy_timeout=5000")


@dataclass(frozen=True)
class Servers:
    """Where scratch databases are made: a folder for SQLite files, a PostgreSQL server (or none)."""

    workdir: Path
    postgres_url: str | None

    def backends(self, wanted: str) -> list[str]:
        """Return the backends to run for ``--backend`` (sqlite, postgresql or both)."""
        names = ["sqlite", "postgresql"] if wanted == "both" else [wanted]
        if self.postgres_url is None:
            names = [n for n in names if n != "postgresql"]
        return names


def postgres_server(url: str | None) -> str | None:
    """Return a URL on which databases can be created, or None when no server answers."""
    candidate = url or os.environ.get("QMSFLOW_BENCH_POSTGRES_URL") or DEFAULT_POSTGRES
    try:
        engine = create_engine(candidate, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception:  # no server: PostgreSQL rows are left out and the run says so
        return None
    return candidate


def postgres_version(url: str | None) -> str | None:
    """Return the server's version string."""
    if url is None:
        return None
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        version = str(conn.execute(text("SHOW server_version")).scalar())
    engine.dispose()
    return version


@contextmanager
def scratch(servers: Servers, backend: str, label: str) -> Iterator[str]:
    """Yield the SQLAlchemy URL of a new, empty database; remove it afterwards."""
    if backend == "sqlite":
        path = servers.workdir / f"{label}-{uuid.uuid4().hex[:6]}.sqlite3"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    assert servers.postgres_url is not None
    name = f"qmsflow_bench_{label}_{uuid.uuid4().hex[:6]}".lower()
    admin = create_engine(servers.postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(servers.postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def migrated(url: str) -> Database:
    """Open ``url`` the way qmsflow does and bring the schema to the newest migration."""
    db = Database(make_engine(url, application_name="qmsflow-bench"))
    upgrade(db)
    # and store the shipped calendar, as `qmsflow init` does: the engine plans and sweeps only on the stored one
    with db.write() as session:
        calendar_store.store(session, runtime().calendar)
    return db


def sqlite_path(url: str) -> str:
    """Return the file of a ``sqlite:///`` URL."""
    return url.removeprefix("sqlite:///")


def connect_sqlite(url: str) -> sqlite3.Connection:
    """Open a bare sqlite3 connection with the same pragmas qmsflow sets; transactions are explicit."""
    conn = sqlite3.connect(sqlite_path(url), isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    return conn


def psycopg_dsn(url: str) -> str:
    """Return the libpq connection string of a ``postgresql+psycopg://`` URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


__all__ = [
    "Servers",
    "connect_sqlite",
    "migrated",
    "postgres_server",
    "postgres_version",
    "psycopg_dsn",
    "scratch",
    "sqlite_path",
]
