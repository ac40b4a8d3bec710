"""Wiring: from settings to a database, a runtime, and an up-to-date schema. Used by the CLI and the web app."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from .config import Settings
from .engine.calendar import WorkingCalendar
from .engine.clock import Clock, SystemClock
from .engine.db import Database, make_engine
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
    keyring = settings.keyring()
    return Runtime(
        registry=Registry.from_directory(settings.workflows_dir),
        calendar=WorkingCalendar(settings.calendar_overrides()),
        clock=clock or SystemClock(),
        history_key=keyring,
        language=settings.default_language,
    )


__all__ = ["alembic_config", "build_runtime", "open_database", "upgrade"]
