"""Evidence through the API: stage a file (multipart), attach it to an event by id, download it; refusals are problems."""

from __future__ import annotations

import io
from dataclasses import replace

from flask import Flask

from qmsflow.config import Settings
from qmsflow.engine import Database, Runtime
from qmsflow.web import create_app
from tests.web.api_support import api
from tests.web.cases_support import World, pdf_bytes


def test_a_staged_file_is_attached_to_an_event_and_downloaded(app: Flask, tokens: dict[str, str], world: World) -> None:
    client = app.test_client()
    content = pdf_bytes("Quyết định")
    staged = api(client, "POST", "/evidence", tokens["tnh"], data={"file": (io.BytesIO(content), "quyết định.pdf")},
                 content_type="multipart/form-data")
    assert staged.status_code == 201, staged.json
    assert staged.json["content_type"] == "application/pdf" and staged.json["expires_at"].endswith("Z")
    done = api(client, "POST", f"/cases/{world.case}/events", tokens["tnh"],
               json={"event": "start_applying", "evidence": [staged.json["id"]], "comment": "đưa vào áp dụng"})
    assert done.status_code == 200, done.json
    history = api(client, "GET", f"/cases/{world.case}/history", tokens["gddt"]).json["items"]
    last = history[-1]
    assert last["comment"] == "đưa vào áp dụng" and last["evidence"][0]["name"] == "quyết định.pdf"
    got = api(client, "GET", f"/evidence/{staged.json['id']}", tokens["gddt"])
    assert (got.status_code, got.mimetype, got.get_data()) == (200, "application/pdf", content)
    assert "filename*=UTF-8''" in got.headers["Content-Disposition"]
    # someone else's staged upload cannot be attached
    theirs = api(client, "POST", "/evidence", tokens["thcs"], data={"file": (io.BytesIO(content), "x.pdf")},
                 content_type="multipart/form-data").json["id"]
    refused = api(client, "POST", f"/cases/{world.case}/events", tokens["tnh"],
                  json={"event": "record_internal_audit", "evidence": [theirs]})
    assert refused.status_code in (404, 422)


def test_refused_uploads(db: Database, rt: Runtime, web_settings: Settings, people: dict[str, str], tokens: dict[str, str]) -> None:
    settings = replace(web_settings, evidence=replace(web_settings.evidence, max_bytes=1000))
    app = create_app({"TESTING": True}, settings=settings, db=db, runtime=rt)
    client = app.test_client()
    not_a_pdf = api(client, "POST", "/evidence", tokens["tnh"], data={"file": (io.BytesIO(b"hello"), "a.pdf")},
                    content_type="multipart/form-data")
    assert (not_a_pdf.status_code, not_a_pdf.json["type"]) == (422, "urn:qmsflow:problem:field-invalid")
    json_body = api(client, "POST", "/evidence", tokens["tnh"], json={"file": "x"})
    assert json_body.status_code == 415
    too_big = api(client, "POST", "/evidence", tokens["tnh"], data={"file": (io.BytesIO(b"%PDF" + b"0" * 3_000_000), "big.pdf")},
                  content_type="multipart/form-data")
    assert (too_big.status_code, too_big.mimetype) == (413, "application/problem+json")
