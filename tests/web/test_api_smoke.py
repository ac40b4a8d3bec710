"""First contact: a token reads a case and advances it."""

from __future__ import annotations

from flask import Flask

from tests.web.api_support import api
from tests.web.cases_support import World


def test_a_token_reads_and_advances_its_case(app: Flask, tokens: dict[str, str], world: World) -> None:
    client = app.test_client()
    got = api(client, "GET", f"/cases/{world.case}", tokens["tnh"])
    assert got.status_code == 200, got.get_data(as_text=True)
    print(got.json)


def test_the_document_is_openapi_3_1(app: Flask) -> None:
    got = app.test_client().get("/api/v1/openapi.json")
    assert got.status_code == 200
    doc = got.json
    assert doc["openapi"].startswith("3.1.")
    print(sorted(doc["paths"]))
    import json
    print(json.dumps(doc["paths"]["/api/v1/cases/{case_id}/events"], indent=1)[:3000])
