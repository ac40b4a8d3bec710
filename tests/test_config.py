"""Settings: defaults, then the instance file, then QMSFLOW_* variables; mistakes fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmsflow.config import ensure_instance, load_settings
from qmsflow.engine import ConfigurationError


def test_environment_variables_override_the_instance_file_which_overrides_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "qmsflow.toml").write_text('database_url = "sqlite:///from-file.db"\n[smtp]\nport = 2525\nhost = "mail.local"\n')
    env = {"QMSFLOW_INSTANCE_PATH": str(tmp_path), "QMSFLOW_SMTP_HOST": "relay.local", "QMSFLOW_SCHEDULER_BATCH_SIZE": "50"}
    settings = load_settings(env)
    assert settings.database_url == "sqlite:///from-file.db"
    assert (settings.smtp.host, settings.smtp.port) == ("relay.local", 2525)
    assert settings.scheduler.batch_size == 50
    assert settings.scheduler.sweep_interval_seconds == 60  # the default


def test_the_default_database_is_a_sqlite_file_in_the_instance_folder(tmp_path: Path) -> None:
    settings = load_settings({"QMSFLOW_INSTANCE_PATH": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{(tmp_path / 'qmsflow.sqlite3').resolve()}"


@pytest.mark.parametrize(
    ("env", "file", "message"),
    [
        ({"QMSFLOW_SCHEDULER_BATCH_SIZE": "lots"}, "", "whole number"),
        ({"QMSFLOW_SMTP_ENABLED": "maybe"}, "", "true or false"),
        ({}, "colour = 'red'\n", "unknown setting 'colour'"),
        ({}, "smtp = 3\n", "must be a table"),
        ({}, "database_url = \n", "qmsflow.toml"),
    ],
)
def test_a_bad_setting_is_refused_with_its_name(tmp_path: Path, env: dict[str, str], file: str, message: str) -> None:
    (tmp_path / "qmsflow.toml").write_text(file)
    with pytest.raises(ConfigurationError, match=message):
        load_settings({"QMSFLOW_INSTANCE_PATH": str(tmp_path), **env})


def test_init_generates_missing_secrets_once_and_keeps_them(tmp_path: Path) -> None:
    settings = load_settings({"QMSFLOW_INSTANCE_PATH": str(tmp_path)})
    with pytest.raises(ConfigurationError, match="QMSFLOW_HISTORY_KEY"):
        settings.require("history_key")
    first = ensure_instance(settings)
    assert len(first.history_key) == 64 and len(first.secret_key) == 64
    again = ensure_instance(load_settings({"QMSFLOW_INSTANCE_PATH": str(tmp_path)}))
    assert (again.history_key, again.secret_key) == (first.history_key, first.secret_key)
    assert (tmp_path / "qmsflow.toml").stat().st_mode & 0o077 == 0  # readable by its owner only


def test_a_broken_calendar_override_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "calendar.yaml"
    bad.write_text("2026:\n  days_off: [2026-13-01]\n")
    settings = load_settings({"QMSFLOW_INSTANCE_PATH": str(tmp_path), "QMSFLOW_CALENDAR_FILE": str(bad)})
    with pytest.raises(ConfigurationError, match="calendar overrides"):
        settings.calendar_overrides()
