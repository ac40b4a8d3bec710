"""Wiring: from settings to a database, a runtime, and an up-to-date schema. Used by the CLI and the web app."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config

from .config import Settings
from .engine.calendar import WorkingCalendar
from .engine.clock import Clock, SystemClock
from .engine.db import Database, make_engine
from .engine.errors import ConfigurationError
from .engine.evidence import EvidenceStore
from .engine.registry import Registry
from .engine.runtime import Runtime

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(db: Database) -> Config:
    """Return an Alembic config pointing at the packaged migrations and ``db``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", db.engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(db: Database) -> None:
    """Create or upgrade the schema to the newest migration; running it twice changes nothing."""
    cfg = alembic_config(db)
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def open_database(settings: Settings, application_name: str = "qmsflow") -> Database:
    """Open the configured database (creating the instance folder for the default SQLite file)."""
    if settings.database_url.startswith("sqlite:///"):
        Path(settings.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return Database(
        make_engine(settings.database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms, application_name=application_name)
    )


def build_runtime(settings: Settings, clock: Clock | None = None) -> Runtime:
    """Load definitions and the calendar and return the runtime services share."""
    settings.require("history_key")
    return Runtime(
        registry=Registry.from_directory(settings.workflows_dir),
        calendar=WorkingCalendar(settings.calendar_overrides()),
        clock=clock or SystemClock(),
        history_key=settings.history_key.encode("utf-8"),
        language=settings.default_language,
    )


def evidence_store(settings: Settings) -> EvidenceStore:
    """Return the evidence store the settings name; refuse a folder inside the web app's package (it serves static files)."""
    ev = settings.evidence
    directory = Path(ev.dir) if ev.dir else settings.instance_path / "evidence"
    web = (Path(__file__).parent / "web").resolve()
    if directory.resolve().is_relative_to(web):
        raise ConfigurationError(f"evidence dir {directory} is inside {web}, which the web app serves from")
    if ev.max_bytes < 1 or ev.staging_hours < 1:
        raise ConfigurationError("evidence max_bytes and staging_hours must be positive")
    return EvidenceStore(directory=directory, max_bytes=ev.max_bytes, staging=timedelta(hours=ev.staging_hours))


__all__ = ["alembic_config", "build_runtime", "evidence_store", "open_database", "upgrade"]
