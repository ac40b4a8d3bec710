"""Fixtures of the case pages' tests: the app on the test database, a signed-in client per person."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from qmsflow.config import EvidenceSettings, load_settings
from qmsflow.engine import Database, Runtime
from qmsflow.engine.permissions import CONSOLE
from qmsflow.engine.users import set_password, user_by_name
from qmsflow.web import create_app
from tests.conftest import Province

PASSWORD = "mật-khẩu-thử-1234"


def pdf_bytes(text: str = "Biên bản") -> bytes:
    """A small PDF that pypdf parses: one empty page."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_metadata({"/Title": text})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture
def app(db: Database, rt: Runtime, province: Province, tmp_path: Path) -> Flask:
    """The web app on the test database and clock, CSRF off (one test turns it on), evidence in tmp."""
    settings = replace(
        load_settings({}, {"instance_path": str(tmp_path / "instance")}), secret_key="s" * 32, history_key="k",
        evidence=EvidenceSettings(dir=str(tmp_path / "evidence"), max_bytes=200_000),
    )
    with db.write() as session:
        for username in province.actors:
            set_password(session, user_by_name(session, username), PASSWORD, now=rt.clock.now(), rt=rt, actor=CONSOLE)
    return create_app({"TESTING": True, "WTF_CSRF_ENABLED": False}, settings=settings, db=db, runtime=rt)


@pytest.fixture
def sign_in(app: Flask) -> Callable[[str], FlaskClient]:
    """A new client signed in as ``username``."""

    def make(username: str) -> FlaskClient:
        client = app.test_client()
        response = client.post("/sign-in", data={"username": username, "password": PASSWORD})
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        return client

    return make
