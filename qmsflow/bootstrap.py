"""Wiring: from settings to a database, a runtime, and an up-to-date schema. Used by the CLI and the web app.

Alembic is imported only by ``upgrade``: every other command starts without it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .config import CACHE_DIR, Settings
from .engine.calendar import WorkingCalendar
from .engine.clock import Clock, SystemClock
from .engine.db import Database, make_engine
from .engine.errors import ConfigurationError
from .engine.registry import Registry
from .engine.runtime import Runtime

if TYPE_CHECKING:
    from alembic.config import Config

    from .engine.evidence import EvidenceStore

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*['\"]?([\w-]+|None)['\"]?", re.MULTILINE)


def alembic_config(db: Database) -> Config:
    """Return an Alembic config pointing at the packaged migrations and ``db``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", db.engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(db: Database) -> None:
    """Create or upgrade the schema to the newest migration; running it twice changes nothing."""
    from alembic import command

    cfg = alembic_config(db)
    with db.translated(), db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def known_revisions() -> tuple[list[str], str]:
    """Return the packaged migration revisions, oldest first, and the head, read from the files (no Alembic)."""
    parents: dict[str, str | None] = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict((key, value) for key, value in _REVISION.findall(path.read_text(encoding="utf-8")))
        if "revision" in found:
            down = found.get("down_revision")
            parents[found["revision"]] = None if down in (None, "None") else down
    children = {down for down in parents.values() if down}
    heads = [rev for rev in parents if rev not in children]
    if len(heads) != 1:
        raise ConfigurationError(f"the packaged migrations have {len(heads)} heads, expected one: {sorted(heads)}")
    ordered = [heads[0]]
    while (down := parents.get(ordered[-1])) is not None:
        ordered.append(down)
    return ordered[::-1], heads[0]


def check_schema(db: Database) -> None:
    """Refuse, naming `qmsflow init`, a database without qmsflow's schema or with an older one."""
    revisions, head = known_revisions()
    with db.translated(), db.engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            raise ConfigurationError(f"the database {db.safe_url} has no qmsflow schema: run `qmsflow init` to create it")
        stored = list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    if stored == [head]:
        return
    if len(stored) == 1 and stored[0] in revisions:
        raise ConfigurationError(
            f"the database {db.safe_url} has an older qmsflow schema ({stored[0]}, this qmsflow needs {head}): "
            "back it up, then run `qmsflow init` to upgrade it"
        )
    raise ConfigurationError(
        f"the database {db.safe_url} has schema revision {stored or 'none'}, which this qmsflow does not know "
        f"(it knows {', '.join(revisions)}): it was made by a newer qmsflow, or by another program"
    )


def database_url(settings: Settings) -> URL:
    """Parse and check the configured database URL: SQLite, or PostgreSQL through psycopg."""
    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        raise ConfigurationError(
            f"QMSFLOW_DATABASE_URL {settings.database_url!r} is not a database URL: leave it empty for SQLite in the "
            "instance folder, or use postgresql+psycopg://user@host:5432/dbname"
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return url
    raise ConfigurationError(
        f"database {url.drivername!r} is not supported: qmsflow runs on SQLite (leave QMSFLOW_DATABASE_URL empty) "
        "or PostgreSQL (postgresql+psycopg://user@host:5432/dbname)"
    )


def open_database(settings: Settings, application_name: str = "qmsflow", *, must_exist: bool = False) -> Database:
    """Open the configured database.

    With ``must_exist`` (every command but ``init`` and ``demo``), a SQLite file that is not there is
    refused instead of being created empty; otherwise its folder is created.
    """
    url = database_url(settings)
    if url.drivername.startswith("sqlite") and url.database and url.database != ":memory:":
        path = Path(url.database)
        if must_exist and not path.exists():
            raise ConfigurationError(
                f"no qmsflow database at {path}: run `qmsflow init` here or set QMSFLOW_INSTANCE_PATH"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
    return Database(
        make_engine(
            url.render_as_string(hide_password=False),
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            application_name=application_name,
        )
    )


def build_registry(settings: Settings) -> Registry:
    """Load and compile the workflow definitions (no history key needed).

    Their parsed YAML is cached in the instance folder's ``cache/`` when it exists (``qmsflow init`` and
    ``qmsflow demo`` make it; nothing else creates it); see ``_ParseCache`` in qmsflow/engine/definitions.py.
    """
    cache = settings.instance_path / CACHE_DIR
    return Registry.from_directory(settings.workflows_dir, cache_dir=cache if cache.is_dir() else None)


def build_calendar(settings: Settings) -> WorkingCalendar:
    """Build the working calendar from the override file (no history key needed)."""
    return WorkingCalendar(settings.calendar_overrides())


def build_runtime(
    settings: Settings, clock: Clock | None = None, *, registry: Registry | None = None, calendar: WorkingCalendar | None = None
) -> Runtime:
    """Load definitions and the calendar and return the runtime services share."""
    keyring = settings.keyring()
    return Runtime(
        registry=registry or build_registry(settings),
        calendar=calendar or build_calendar(settings),
        clock=clock or SystemClock(),
        history_key=keyring,
        language=settings.default_language,
    )


def evidence_store(settings: Settings) -> EvidenceStore:
    """Return the evidence store the settings name; refuse a folder inside the web app's package (it serves static files)."""
    from .engine.evidence import EvidenceStore  # on demand, like every import a command needs
    ev = settings.evidence
    directory = Path(ev.dir) if ev.dir else settings.instance_path / "evidence"
    web = (Path(__file__).parent / "web").resolve()
    if directory.resolve().is_relative_to(web):
        raise ConfigurationError(f"evidence dir {directory} is inside {web}, which the web app serves from")
    if ev.max_bytes < 1 or ev.staging_hours < 1:
        raise ConfigurationError("evidence max_bytes and staging_hours must be positive")
    return EvidenceStore(directory=directory, max_bytes=ev.max_bytes, staging=timedelta(hours=ev.staging_hours))


__all__ = [
    "alembic_config",
    "build_calendar",
    "build_registry",
    "build_runtime",
    "check_schema",
    "database_url",
    "evidence_store",
    "known_revisions",
    "open_database",
    "upgrade",
]
