"""Advancing through the API: ETag and If-Match, expected_version, the engine's order of answers,
machine-readable reasons, malformed input, Idempotency-Key, pages and the rate limit."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from qmsflow.config import Settings
from qmsflow.engine import Database, Runtime
from qmsflow.engine.models import HistoryEntry
from qmsflow.web import create_app
from tests.web.api_support import api
from tests.web.cases_support import World

PROBLEM = "urn:qmsflow:problem:"


def _history(db: Database, case_id: int) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(HistoryEntry).where(HistoryEntry.case_id == case_id)) or 0)


def _fire(app: Flask, token: str, case_id: int, body: dict[str, Any], **headers: str) -> Any:
    return api(app.test_client(), "POST", f"/cases/{case_id}/events", token, json=body,
               headers={k.replace("_", "-"): v for k, v in headers.items()})


def test_a_case_carries_its_version_as_a_strong_etag_and_if_match_guards_the_event(
    app: Flask, db: Database, tokens: dict[str, str], world: World
) -> None:
    read = api(app.test_client(), "GET", f"/cases/{world.case}", tokens["tnh"])
    assert read.headers["ETag"] == '"4"' and read.json["version"] == 4
    stale = _fire(app, tokens["tnh"], world.case, {"event": "start_applying"}, If_Match='"3"')
    assert (stale.status_code, stale.json["type"], stale.json["current_version"]) == (412, PROBLEM + "precondition-failed", 4)
    done = _fire(app, tokens["tnh"], world.case, {"event": "start_applying"}, If_Match='"4"')
    assert done.status_code == 200, done.json
    assert done.headers["ETag"] == '"5"'
    assert (done.json["from_state"], done.json["to_state"], done.json["case"]["version"]) == ("building", "applying", 5)
    assert done.json["case"]["opened_at"].endswith("Z")


def test_expected_version_answers_409_with_the_current_version_and_disagreement_400(
    app: Flask, db: Database, tokens: dict[str, str], world: World
) -> None:
    before = _history(db, world.case)
    stale = _fire(app, tokens["tnh"], world.case, {"event": "start_applying", "expected_version": 2})
    assert (stale.status_code, stale.json["type"]) == (409, PROBLEM + "stale-version")
    assert (stale.json["current_version"], stale.json["expected_version"]) == (4, 2)
    both = _fire(app, tokens["tnh"], world.case, {"event": "start_applying", "expected_version": 4}, If_Match='"3"')
    assert (both.status_code, both.json["type"]) == (400, PROBLEM + "precondition-mismatch")
    bad = _fire(app, tokens["tnh"], world.case, {"event": "start_applying"}, If_Match="W/\"4\"")
    assert (bad.status_code, bad.json["type"]) == (400, PROBLEM + "invalid-parameter")
    assert _history(db, world.case) == before


def test_scope_and_role_come_before_the_version(app: Flask, tokens: dict[str, str], world: World) -> None:
    hidden = _fire(app, tokens["tnh"], world.other_case, {"event": "start_applying", "expected_version": 1}, If_Match='"1"')
    assert hidden.status_code == 404
    role = _fire(app, tokens["lead"], world.case, {"event": "start_applying", "expected_version": 1})
    assert (role.status_code, role.json["type"]) == (403, PROBLEM + "forbidden")


def test_422_says_why_per_field(app: Flask, db: Database, tokens: dict[str, str], world: World) -> None:
    before = _history(db, world.case)
    wrong_state = _fire(app, tokens["tnh"], world.case, {"event": "record_internal_audit"})
    assert (wrong_state.status_code, wrong_state.json["type"]) == (422, PROBLEM + "invalid-transition")
    assert wrong_state.json["state"] == "building"
    no_such = _fire(app, tokens["tnh"], world.case, {"event": "fly_to_the_moon"})
    assert no_such.json["type"] == PROBLEM + "invalid-transition"
    fields = _fire(app, tokens["tnh"], world.case, {"event": "establish_committee", "data": {"committee_decided_on": "05/01/2026"}})
    assert (fields.status_code, fields.json["type"]) == (422, PROBLEM + "field-invalid")
    reasons = {(e["field"], e["code"]) for e in fields.json["errors"]}
    assert ("committee_decision_number", "required") in reasons
    assert any(f == "committee_decided_on" for f, _ in reasons)
    unknown = _fire(app, tokens["tnh"], world.case, {"event": "start_applying", "colour": "red"})
    assert (unknown.status_code, unknown.json["errors"][0]["field"]) == (422, "colour")
    assert _history(db, world.case) == before


def test_malformed_json_is_400_and_another_content_type_415(app: Flask, tokens: dict[str, str], world: World) -> None:
    client = app.test_client()
    broken = api(client, "POST", f"/cases/{world.case}/events", tokens["tnh"], data='{"event": ', content_type="application/json")
    assert (broken.status_code, broken.mimetype, broken.json["type"]) == (400, "application/problem+json", PROBLEM + "malformed-json")
    form = api(client, "POST", f"/cases/{world.case}/events", tokens["tnh"], data={"event": "x"})
    assert (form.status_code, form.json["type"]) == (415, PROBLEM + "unsupported-media-type")
    array = api(client, "POST", f"/cases/{world.case}/events", tokens["tnh"], json=[1, 2])
    assert array.status_code == 422


def test_the_same_post_twice_with_one_idempotency_key_moves_the_case_once(
    app: Flask, db: Database, tokens: dict[str, str], world: World
) -> None:
    before = _history(db, world.case)
    first = _fire(app, tokens["tnh"], world.case, {"event": "start_applying"}, Idempotency_Key="retry-1")
    again = _fire(app, tokens["tnh"], world.case, {"event": "start_applying"}, Idempotency_Key="retry-1")
    assert first.status_code == again.status_code == 200
    assert first.get_data() == again.get_data()
    assert again.headers["Idempotency-Replayed"] == "true" and again.headers["ETag"] == '"5"'
    assert _history(db, world.case) == before + 1
    other_body = _fire(app, tokens["tnh"], world.case, {"event": "start_applying", "comment": "x"}, Idempotency_Key="retry-1")
    assert (other_body.status_code, other_body.json["type"]) == (422, PROBLEM + "idempotency-key-reused")
    # another token's key of the same name is its own
    assert _fire(app, tokens["lead"], world.case, {"event": "start_applying"}, Idempotency_Key="retry-1").status_code == 403
    # a 4xx is replayed too
    refused = _fire(app, tokens["tnh"], world.case, {"event": "start_applying"}, Idempotency_Key="retry-2")
    assert refused.status_code == 422
    assert _fire(app, tokens["tnh"], world.case, {"event": "start_applying"}, Idempotency_Key="retry-2").headers["Idempotency-Replayed"] == "true"
    long = _fire(app, tokens["tnh"], world.case, {"event": "start_applying"}, Idempotency_Key="k" * 256)
    assert (long.status_code, long.json["type"]) == (400, PROBLEM + "invalid-parameter")
    assert _history(db, world.case) == before + 1


def test_lists_are_pages_with_a_link_header_and_checked_parameters(app: Flask, tokens: dict[str, str], world: World) -> None:
    client = app.test_client()
    first = api(client, "GET", "/cases?page_size=1", tokens["lead"])
    assert first.status_code == 200 and len(first.json["items"]) == 1
    link = first.headers["Link"]
    assert link.endswith('rel="next"') and first.json["next_cursor"]
    second = api(client, "GET", link[1:link.index(">")].removeprefix("/api/v1"), tokens["lead"])
    assert second.status_code == 200 and second.json["items"][0]["id"] < first.json["items"][0]["id"]
    for bad in ("page_size=0", "page_size=201", "late=maybe", "colour=red", "cursor=nonsense", "stage=nowhere"):
        got = api(client, "GET", f"/cases?{bad}", tokens["lead"])
        assert (got.status_code, got.json["type"]) == (400, PROBLEM + "invalid-parameter"), bad
    late = api(client, "GET", f"/cases?unit={world.case}&late=false&escalated=0&workflow=qms_lifecycle&stage=building", tokens["lead"])
    assert late.status_code == 200


def test_unknown_routes_and_methods_are_problems_too(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    missing = api(client, "GET", "/nowhere", tokens["tnh"])
    assert (missing.status_code, missing.mimetype) == (404, "application/problem+json")
    wrong = api(client, "DELETE", "/cases", tokens["tnh"])
    assert (wrong.status_code, wrong.json["type"]) == (405, PROBLEM + "method-not-allowed")


def test_a_token_over_its_rate_limit_gets_429(
    db: Database, rt: Runtime, web_settings: Settings, people: dict[str, str], tokens: dict[str, str]
) -> None:
    settings = replace(web_settings, api=replace(web_settings.api, rate_limit_per_minute=3))
    app = create_app({"TESTING": True}, settings=settings, db=db, runtime=rt)
    client = app.test_client()
    statuses = [api(client, "GET", "/units", tokens["tnh"]).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = api(client, "GET", "/units", tokens["tnh"])
    assert limited.json["type"] == PROBLEM + "rate-limited" and int(limited.headers["Retry-After"]) >= 1
    assert api(client, "GET", "/units", tokens["lead"]).status_code == 200  # counted per token
