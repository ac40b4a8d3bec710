"""The app factory: settings in, extensions attached, nothing at import time."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from qmsflow.config import load_settings
from qmsflow.engine import CalendarOverrides, ConfigurationError, Database, Runtime, WorkingCalendar
from qmsflow.web import create_app


def test_the_app_answers_its_health_check_from_the_database(db: Database, rt: Runtime, tmp_path: Path) -> None:
    settings = replace(load_settings({}, {"instance_path": str(tmp_path)}), secret_key="s" * 32, history_key="k")
    app = create_app({"TESTING": True}, settings=settings, db=db, runtime=rt)
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok", "calendar": rt.calendar.fingerprint(), "workflows": ["corrective_action@1", "corrective_action@2", "qms_lifecycle@1", "qms_lifecycle@2"],
    }
    assert app.config["BABEL_DEFAULT_LOCALE"] == "vi"


def test_a_process_on_another_calendar_than_the_stored_one_is_not_healthy(db: Database, rt: Runtime, tmp_path: Path) -> None:
    other = Runtime(
        registry=rt.registry, calendar=WorkingCalendar(CalendarOverrides.from_mapping({2026: {"days_off": ["2026-03-05"]}})),
        clock=rt.clock, history_key=rt.history_key,
    )
    settings = replace(load_settings({}, {"instance_path": str(tmp_path)}), secret_key="s" * 32, history_key="k")
    response = create_app({"TESTING": True}, settings=settings, db=db, runtime=other).test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "calendar_mismatch"
    assert (body["calendar"], body["stored_calendar"]) == (other.calendar.fingerprint(), rt.calendar.fingerprint())
    assert "qmsflow calendar replan" in body["detail"]


def test_the_app_refuses_to_start_without_a_secret_key(db: Database, rt: Runtime, tmp_path: Path) -> None:
    settings = load_settings({}, {"instance_path": str(tmp_path)})
    with pytest.raises(ConfigurationError, match="QMSFLOW_SECRET_KEY"):
        create_app(settings=settings, db=db, runtime=rt)
