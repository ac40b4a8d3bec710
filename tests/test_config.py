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
        ({"QMSFLOW_WEB_BASE_URL": "iso.angiang.gov.vn"}, "", "QMSFLOW_WEB_BASE_URL"),
        ({"QMSFLOW_WEB_BASE_URL": "https://"}, "", "QMSFLOW_WEB_BASE_URL"),
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


@pytest.mark.parametrize(
    ("retired", "message"),
    [
        ("1=abc", "is not ID=KEY@RETIRED_AT"),
        ("1=abc@yesterday", "'yesterday' is not an ISO instant"),
        ("1=abc@2026-12-01T10:00:00", "needs a UTC offset"),
        ("bad id!=abc@2026-12-01T10:00:00+00:00", "is not ID=KEY@RETIRED_AT|key id"),
        ("7=k@2026-12-01T10:00:00+00:00", "the same key"),
        ("7=a@2026-12-01T10:00:00+00:00 7=b@2026-12-02T10:00:00+00:00", "listed twice"),
        ("2=a@2026-12-01T10:00:00+00:00", "listed twice"),
    ],
)
def test_a_malformed_history_keyring_is_refused_naming_the_setting(tmp_path: Path, retired: str, message: str) -> None:
    env = {"QMSFLOW_INSTANCE_PATH": str(tmp_path), "QMSFLOW_HISTORY_KEY": "k", "QMSFLOW_HISTORY_KEY_ID": "2",
           "QMSFLOW_HISTORY_RETIRED_KEYS": retired}
    with pytest.raises(ConfigurationError, match=message) as caught:
        load_settings(env)
    assert "history" in str(caught.value).lower()


def test_the_keyring_is_set_by_environment_variables(tmp_path: Path) -> None:
    env = {"QMSFLOW_INSTANCE_PATH": str(tmp_path), "QMSFLOW_HISTORY_KEY": "new", "QMSFLOW_HISTORY_KEY_ID": "2",
           "QMSFLOW_HISTORY_RETIRED_KEYS": "1=old@2026-12-01T17:00:00+07:00"}
    ring = load_settings(env).keyring()
    assert (ring.current.key_id, ring.current.secret) == ("2", b"new")
    (old,) = ring.retired
    assert (old.key_id, old.secret, old.retired_at and old.retired_at.isoformat()) == ("1", b"old", "2026-12-01T10:00:00+00:00")


def test_a_secret_generated_after_a_rotation_stays_a_top_level_setting(tmp_path: Path) -> None:
    # Regression: init appended missing secrets at the end, inside the [history] table rotate-key writes.
    (tmp_path / "qmsflow.toml").write_text('history_key = "k2"\n\n[history]\nkey_id = "2"\nretired_keys = ""\n')
    ensure_instance(load_settings({"QMSFLOW_INSTANCE_PATH": str(tmp_path)}))
    again = load_settings({"QMSFLOW_INSTANCE_PATH": str(tmp_path)})
    assert len(again.secret_key) == 64 and again.history_key == "k2" and again.history.key_id == "2"


@pytest.mark.parametrize("name", ["BATCH_SIZE", "ROUTE_BATCHES_PER_CYCLE", "REPLAN_BATCH_SIZE"])
def test_a_scheduler_batch_setting_below_one_is_refused_naming_it(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=f"QMSFLOW_SCHEDULER_{name}"):
        load_settings({"QMSFLOW_INSTANCE_PATH": str(tmp_path), f"QMSFLOW_SCHEDULER_{name}": "0"})


def test_routing_per_wake_up_is_bounded_by_default_and_overridable(tmp_path: Path) -> None:
    assert load_settings({"QMSFLOW_INSTANCE_PATH": str(tmp_path)}).scheduler.route_batches_per_cycle == 10
    settings = load_settings({"QMSFLOW_INSTANCE_PATH": str(tmp_path), "QMSFLOW_SCHEDULER_ROUTE_BATCHES_PER_CYCLE": "3"})
    assert settings.scheduler.route_batches_per_cycle == 3


# ------------------------------------------------------------------------------------ webhooks


def test_webhook_settings_come_from_the_webhooks_section_and_its_variables(tmp_path: Path) -> None:
    (tmp_path / "qmsflow.toml").write_text('[webhooks]\nallowed_hosts = ["hooks.angiang.gov.vn"]\ntimeout_seconds = 4\n')
    settings = load_settings({"QMSFLOW_INSTANCE_PATH": str(tmp_path)}).webhooks
    assert (settings.enabled, settings.allowed_hosts, settings.timeout_seconds) == (True, ("hooks.angiang.gov.vn",), 4)
    env = {"QMSFLOW_INSTANCE_PATH": str(tmp_path), "QMSFLOW_WEBHOOKS_ALLOWED_HOSTS": "a.gov.vn, .b.gov.vn",
           "QMSFLOW_WEBHOOKS_ENABLED": "off", "QMSFLOW_WEBHOOKS_TIMEOUT_SECONDS": "2.5"}
    settings = load_settings(env).webhooks
    assert (settings.enabled, settings.allowed_hosts, settings.timeout_seconds) == (False, ("a.gov.vn", ".b.gov.vn"), 2.5)
    assert settings.allows("x.b.gov.vn") and not settings.allows("c.gov.vn")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"QMSFLOW_WEBHOOKS_BATCH_SIZE": "0"}, "QMSFLOW_WEBHOOKS_BATCH_SIZE"),
        ({"QMSFLOW_WEBHOOKS_TIMEOUT_SECONDS": "soon"}, "QMSFLOW_WEBHOOKS_TIMEOUT_SECONDS"),
        ({"QMSFLOW_WEBHOOKS_ALLOWED_HOSTS": "https://a.gov.vn/hooks"}, "QMSFLOW_WEBHOOKS_ALLOWED_HOSTS"),
        ({"QMSFLOW_WEBHOOKS_RETRY_MAX_SECONDS": "5"}, "QMSFLOW_WEBHOOKS_RETRY_MAX_SECONDS"),
    ],
)
def test_a_bad_webhook_setting_is_refused_with_its_name(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings({"QMSFLOW_INSTANCE_PATH": str(tmp_path), **env})
