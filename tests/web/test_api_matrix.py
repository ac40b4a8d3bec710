"""The JSON API's role-by-endpoint matrix, written out by hand: every route, every role, the status it gets.

Each answer is also checked against the generated document: its status is documented for that
operation, so "every real response is documented" holds for every cell. Then a unit officer's
token probes another unit's case, history, evidence and events by id (404, nothing changed, read
through a second connection), and expired, revoked and deactivated tokens get 401.
"""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from qmsflow.engine import Database, FixedClock, Runtime
from qmsflow.engine.models import ApiToken, User
from qmsflow.engine.permissions import CONSOLE
from qmsflow.engine.tokens import create_token, revoke_token
from tests.conftest import Province, rows_committed
from tests.web.api_support import api
from tests.web.cases_support import World, pdf_bytes

ROLES = ["anonymous", "admin", "lead", "gddt", "mythoi", "tnh", "thcs", "viewer"]
API_TABLES = {"api_tokens", "api_rate_windows", "idempotency_keys"}  # a request's own bookkeeping


def _cols(text: str) -> dict[str, int]:
    return dict(zip(ROLES, (int(x) for x in text.split()), strict=True))


#            anon admin lead gddt mythoi tnh thcs viewer
ALL_200 = _cols("401 200 200 200 200 200 200 200")
CASE_VIEW = _cols("401 200 200 200 404 200 404 200")

# (method, document path, what goes in the path, body, statuses by role)
MATRIX: list[tuple[str, str, str, Any, dict[str, int]]] = [
    ("GET", "/units", "", None, ALL_200),
    ("GET", "/units/{unit_id}", "unit", None, CASE_VIEW),
    ("POST", "/units", "", "new_unit", _cols("401 201 201 403 403 403 403 403")),
    ("PATCH", "/units/{unit_id}", "unit", {"name": "Trường THPT Thoại Ngọc Hầu"}, _cols("401 200 200 403 404 403 404 403")),
    ("GET", "/cases", "", None, ALL_200),
    ("GET", "/cases/{case_id}", "case", None, CASE_VIEW),
    # the unit already has an open lifecycle: 409 for those who may open one
    ("POST", "/cases", "", {"unit_id": "unit", "workflow": "qms_lifecycle"}, _cols("401 409 409 403 404 403 404 403")),
    # a stale expected_version: nothing fires; only the unit's officer passes scope and role
    ("POST", "/cases/{case_id}/events", "case", {"event": "start_applying", "expected_version": 999},
     _cols("401 403 403 403 404 409 404 403")),
    ("GET", "/cases/{case_id}/history", "case", None, CASE_VIEW),
    ("POST", "/evidence", "", "upload", _cols("401 201 201 201 201 201 201 201")),
    ("GET", "/evidence/{attachment_id}", "attachment", None, CASE_VIEW),
    ("GET", "/timers", "", None, ALL_200),
    ("GET", "/escalations", "", None, ALL_200),
    ("GET", "/notifications", "", None, ALL_200),
    ("POST", "/notifications/read", "", {"all": True}, ALL_200),
    ("GET", "/openapi.json", "", None, _cols("200 200 200 200 200 200 200 200")),
    ("GET", "/docs", "", None, _cols("200 200 200 200 200 200 200 200")),
    # issue 14, the remaining endpoints (kept in one block)
    ("GET", "/summary", "", None, ALL_200),
]


def _fill(template: str, world: World, unit_id: int) -> str:
    ids = {"{case_id}": world.case, "{unit_id}": unit_id, "{attachment_id}": world.attachment}
    for name, value in ids.items():
        template = template.replace(name, str(value))
    return template


def _send(client: Any, method: str, path: str, token: str | None, body: Any, role: str, unit_id: int) -> Any:
    if body == "upload":
        return api(client, method, path, token, data={"file": (io.BytesIO(pdf_bytes()), "kế hoạch.pdf")},
                   content_type="multipart/form-data")
    if body == "new_unit":
        body = {"code": f"NEW-{role}", "name": f"Đơn vị mới {role}", "kind": "other"}
    if isinstance(body, dict):
        body = {k: (unit_id if v == "unit" else v) for k, v in body.items()}
        return api(client, method, path, token, json=body)
    return api(client, method, path, token)


def test_every_route_is_in_the_matrix(app: Flask) -> None:
    routes = {
        (method, rule.rule.removeprefix("/api/v1").replace("<int:", "{").replace(">", "}"))
        for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")
        for method in rule.methods or () if method not in {"HEAD", "OPTIONS"}
    }
    assert routes == {(m, p) for m, p, *_ in MATRIX}


def test_role_by_endpoint(app: Flask, tokens: dict[str, str], world: World, province: Province) -> None:
    client = app.test_client()
    doc = client.get("/api/v1/openapi.json").json
    unit_id = province.units["THPT-TNH"].id
    got: dict[tuple[str, str, str], int] = {}
    for method, template, _what, body, _expected in MATRIX:
        path = _fill(template, world, unit_id)
        for role in ROLES:
            response = _send(client, method, path, tokens.get(role), body, role, unit_id)
            got[(method, template, role)] = response.status_code
            assert response.headers["Cache-Control"] == "no-store"
            assert "Set-Cookie" not in response.headers
            assert "Access-Control-Allow-Origin" not in response.headers
            if response.status_code >= 400:
                assert response.mimetype == "application/problem+json", (method, path, role)
                assert response.json["type"].startswith("urn:qmsflow:problem:")
            if template not in {"/openapi.json", "/docs"}:
                documented = doc["paths"][f"/api/v1{template}"][method.lower()]["responses"]
                assert str(response.status_code) in documented, (method, template, role, response.status_code)
    wanted = {(m, t, r): s for m, t, _w, _b, cols in MATRIX for r, s in cols.items()}
    assert got == wanted


def _domain_rows(db: Database) -> dict[str, Any]:
    return {name: rows for name, rows in rows_committed(db).items() if name not in API_TABLES}


def test_an_officer_probing_another_units_case_gets_404_and_changes_nothing(
    app: Flask, db: Database, tokens: dict[str, str], world: World
) -> None:
    client = app.test_client()
    before = _domain_rows(db)
    officer = tokens["tnh"]
    probes = [
        api(client, "GET", f"/cases/{world.other_case}", officer),
        api(client, "GET", f"/cases/{world.other_case}/history", officer),
        api(client, "GET", f"/evidence/{world.other_attachment}", officer),
        api(client, "POST", f"/cases/{world.other_case}/events", officer,
            json={"event": "establish_committee", "data": {"committee_decision_number": "9/QĐ", "committee_decided_on": "2026-01-05"}}),
        api(client, "POST", f"/cases/{world.other_case}/events", officer, json={"event": "start_applying"},
            headers={"Idempotency-Key": "probe-1"}),
    ]
    assert [p.status_code for p in probes] == [404] * len(probes)
    assert {p.json["type"] for p in probes} == {"urn:qmsflow:problem:not-found"}
    assert _domain_rows(db) == before


@pytest.mark.parametrize("how", ["expired", "revoked", "deactivated", "unknown", "malformed"])
def test_a_token_that_no_longer_holds_gets_401(
    app: Flask, db: Database, rt: Runtime, clock: FixedClock, tokens: dict[str, str], world: World, how: str
) -> None:
    client = app.test_client()
    with db.write() as session:
        user = session.scalar(select(User).where(User.username == "tnh"))
        assert user is not None
        token, secret = create_token(session, rt, CONSOLE, user, name="short", expires_at=clock.now() + timedelta(hours=1))
        token_id = token.id
    assert api(client, "GET", f"/cases/{world.case}", secret).status_code == 200
    if how == "expired":
        clock.advance(timedelta(hours=2))
    elif how == "revoked":
        with db.write() as session:
            assert revoke_token(session, rt, CONSOLE, token_id)
    elif how == "deactivated":
        with db.write() as session:
            session.execute(update(User).where(User.username == "tnh").values(active=False))
    elif how == "unknown":
        secret = secret[:-4] + "AAAA"
    else:
        secret = "not a token"
    got = api(client, "GET", f"/cases/{world.case}", secret)
    assert got.status_code == 401
    assert got.json["type"] == "urn:qmsflow:problem:unauthorized"
    assert got.headers["WWW-Authenticate"].startswith("Bearer")
    with db.read() as session:
        assert session.get(ApiToken, token_id) is not None


# issue 14, the remaining endpoints: a token that no longer holds gets 401 on each of them too
ISSUE_14_ROUTES = ["/summary"]


@pytest.mark.parametrize("how", ["expired", "revoked"])
def test_the_issue_14_routes_refuse_a_token_that_no_longer_holds(
    app: Flask, db: Database, rt: Runtime, clock: FixedClock, tokens: dict[str, str], how: str
) -> None:
    client = app.test_client()
    with db.write() as session:
        user = session.scalar(select(User).where(User.username == "tnh"))
        assert user is not None
        token, secret = create_token(session, rt, CONSOLE, user, name="short", expires_at=clock.now() + timedelta(hours=1))
        token_id = token.id
    assert all(api(client, "GET", path, secret).status_code == 200 for path in ISSUE_14_ROUTES)
    if how == "expired":
        clock.advance(timedelta(hours=2))
    else:
        with db.write() as session:
            assert revoke_token(session, rt, CONSOLE, token_id)
    for path in ISSUE_14_ROUTES:
        got = api(client, "GET", path, secret)
        assert got.status_code == 401 and got.json["type"] == "urn:qmsflow:problem:unauthorized", path
