"""``GET /api/v1/summary``: the dashboard's figures from the same engine service, scoped to the token's user."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest
from flask import Flask
from flask.testing import FlaskClient

from qmsflow.engine import Database, Runtime
from qmsflow.engine.province import province_summary
from tests.conftest import Province
from tests.web.api_support import api


def test_the_summary_is_the_dashboards_service_and_follows_the_tokens_scope(
    app: Flask, db: Database, rt: Runtime, tokens: dict[str, str], province: Province,
) -> None:
    client = app.test_client()
    body = api(client, "GET", "/summary?as_of=2025-12-31", tokens["lead"]).get_json()
    with db.read() as session:
        engine = province_summary(session, rt, province.actors["lead"], as_of=date(2025, 12, 31))
    assert body["as_of"] == "2025-12-31" and body["units"]["count"] == engine.units.count
    assert [(f["key"], f["count"], f["filter"]) for f in body["by_stage"]] == [(f.key, f.count, f.filter) for f in engine.by_stage]
    assert len(body["announced_by_month"]) == 24 and body["announced_by_month"][-1]["key"] == "2025-12"
    counts = {name: api(client, "GET", "/summary", tokens[name]).get_json()["units"]["count"] for name in ("lead", "gddt", "tnh")}
    assert counts["lead"] > counts["gddt"] > counts["tnh"] == 1


@pytest.mark.parametrize("raw", ["nonsense", "2025-6-30", "1700000000", "2025-06-30T00:00:00", "2025-02-30"])
def test_a_malformed_day_is_400_naming_as_of(app: Flask, tokens: dict[str, str], raw: str) -> None:
    response = api(app.test_client(), "GET", f"/summary?as_of={raw}", tokens["lead"])
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == "urn:qmsflow:problem:invalid-parameter"
    assert [e["field"] for e in response.get_json()["errors"]] == ["as_of"]


def test_a_day_after_today_is_refused_with_422_by_the_api_and_400_by_the_dashboard(
    app: Flask, tokens: dict[str, str], signed_in: Callable[[str], FlaskClient],
) -> None:
    response = api(app.test_client(), "GET", "/summary?as_of=2026-01-06", tokens["lead"])  # the test clock's today is 5 January
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert [(e["field"], e["code"]) for e in response.get_json()["errors"]] == [("as_of", "not_in_future")]
    assert api(app.test_client(), "GET", "/summary?as_of=2026-01-05", tokens["lead"]).status_code == 200
    page = signed_in("lead").get("/dashboard?as_of=2026-01-06")
    assert page.status_code == 400
    assert "Ngày này chưa đến" in page.get_data(as_text=True) and "Traceback" not in page.get_data(as_text=True)
