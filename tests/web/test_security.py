"""Headers on every response, hostile text shown as text, error pages without tracebacks, no unguarded view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from qmsflow.config import Settings
from qmsflow.engine import Runtime
from qmsflow.engine.db import Database
from qmsflow.engine.models import UnitVersion
from qmsflow.web import access, create_app
from qmsflow.web.security import CSP
from tests.web.conftest import post


def _assert_headers(response) -> None:
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_every_kind_of_response_carries_the_security_headers(signed_in: Callable[[str], FlaskClient]) -> None:
    client = signed_in("admin")
    for response in (client.get("/"), client.get("/admin/users/"), client.get("/static/css/qmsflow.css"), client.get("/nowhere"),
                     client.get("/healthz"), client.post("/sign-out"), signed_in("anonymous").get("/sign-in")):
        _assert_headers(response)
    assert client.get("/").headers["Cache-Control"] == "no-store"
    assert "no-store" not in client.get("/static/css/qmsflow.css").headers.get("Cache-Control", "")
    assert CSP.count("'self'") >= 3


def test_the_session_cookie_is_http_only_lax_and_secure_when_told(app: Flask, db: Database, rt: Runtime, web_settings: Settings) -> None:
    cookie = post(app.test_client(), "/sign-in", {"username": "tnh", "password": "correct horse battery"}).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = create_app({"TESTING": True}, settings=replace(web_settings, web=replace(web_settings.web, secure_cookies=True)), db=db, runtime=rt)
    assert secure.config["SESSION_COOKIE_SECURE"] is True


def test_a_script_in_a_unit_name_shows_as_text(signed_in: Callable[[str], FlaskClient], db: Database) -> None:
    with db.write() as session:
        session.execute(update(UnitVersion).where(UnitVersion.code == "THPT-TNH").values(name='<script>alert("x")</script> Trường THPT'))
    client = signed_in("tnh")
    for page in (client.get("/").get_data(as_text=True), signed_in("admin").get("/admin/users/").get_data(as_text=True)):
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Trường THPT" in page


def test_an_oversized_request_gets_the_413_page(app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = app.test_client().post("/sign-in", data={"username": "x" * 5000})
    assert response.status_code == 413 and "Tệp quá lớn" in response.get_data(as_text=True)


def test_an_unexpected_error_is_a_500_page_in_the_layout_without_a_traceback(
    db: Database, rt: Runtime, web_settings: Settings, people: dict[str, str]
) -> None:
    app = create_app({"TESTING": False}, settings=web_settings, db=db, runtime=rt)

    @access.public
    def broken() -> str:
        raise ZeroDivisionError("boom")

    app.add_url_rule("/broken", "broken", broken)
    response = app.test_client().get("/broken")
    page = response.get_data(as_text=True)
    assert response.status_code == 500 and "Đã có lỗi" in page and "boom" not in page and "Traceback" not in page
    _assert_headers(response)


def test_an_app_with_a_view_that_is_neither_signed_in_nor_public_does_not_start(
    db: Database, rt: Runtime, web_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    forgotten = Blueprint("forgotten", __name__)
    forgotten.add_url_rule("/forgotten", "index", lambda: "open to anyone")
    from qmsflow import web

    original = web._blueprints
    monkeypatch.setattr(web, "_blueprints", lambda: [*original(), forgotten])
    with pytest.raises(RuntimeError, match="forgotten.index"):
        create_app({"TESTING": True}, settings=web_settings, db=db, runtime=rt)
