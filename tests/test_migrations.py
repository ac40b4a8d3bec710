"""The Alembic migrations build the schema the models describe, and 0005 and 0006 can be taken back."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from qmsflow.bootstrap import alembic_config, upgrade
from qmsflow.engine.db import Database, make_engine
from qmsflow.engine.models import Base

NEW_IN_0005 = {"evidence_uploads", "admin_log", "admin_log_head"}
NEW_IN_0008 = {"sign_in_failures", "sign_in_locks"}


def test_the_migrated_schema_matches_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_0005_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    db = Database(make_engine(f"sqlite:///{tmp_path / 'migrations.sqlite3'}"))
    upgrade(db)
    assert NEW_IN_0005 <= set(inspect(db.engine).get_table_names())
    cfg = alembic_config(db)
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0002")
    assert not NEW_IN_0005 & set(inspect(db.engine).get_table_names())
    upgrade(db)
    assert NEW_IN_0005 <= set(inspect(db.engine).get_table_names())
    db.dispose()


def test_0006_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    db = Database(make_engine(f"sqlite:///{tmp_path / 'migrations.sqlite3'}"))
    upgrade(db)
    assert "calendar_days" in inspect(db.engine).get_table_names()
    cfg = alembic_config(db)
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0005")
    assert "calendar_days" not in inspect(db.engine).get_table_names()
    upgrade(db)
    assert "calendar_days" in inspect(db.engine).get_table_names()
    db.dispose()


def test_0008_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    db = Database(make_engine(f"sqlite:///{tmp_path / 'migrations.sqlite3'}"))
    upgrade(db)
    assert NEW_IN_0008 <= set(inspect(db.engine).get_table_names())
    cfg = alembic_config(db)
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0007")
    assert not NEW_IN_0008 & set(inspect(db.engine).get_table_names())
    assert "session_epoch" not in {c["name"] for c in inspect(db.engine).get_columns("users")}
    upgrade(db)
    assert {"session_epoch", "must_change_password"} <= {c["name"] for c in inspect(db.engine).get_columns("users")}
    db.dispose()


NEW_IN_0010 = {"api_tokens", "idempotency_keys", "api_rate_windows"}


def test_0010_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    db = Database(make_engine(f"sqlite:///{tmp_path / 'migrations.sqlite3'}"))
    upgrade(db)
    assert NEW_IN_0010 <= set(inspect(db.engine).get_table_names())
    cfg = alembic_config(db)
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0008")
    assert not NEW_IN_0010 & set(inspect(db.engine).get_table_names())
    upgrade(db)
    assert NEW_IN_0010 <= set(inspect(db.engine).get_table_names())
    db.dispose()
