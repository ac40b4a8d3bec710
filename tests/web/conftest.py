"""Fixtures of the web tests: an app on the test database and province, and clients signed in by role.

Every signed-in client signs in through the sign-in form, as a person would; CSRF protection stays
on, so each POST carries the token of a page the client loaded (``post``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from qmsflow.config import Settings, load_settings
from qmsflow.engine import FixedClock, Runtime
from qmsflow.engine.db import Database
from qmsflow.engine.models import User
from qmsflow.engine.permissions import CONSOLE
from qmsflow.engine.users import _hasher, create_user, reset_password
from qmsflow.web import create_app
from tests.conftest import Province

PASSWORD = "correct horse battery"
_HASH: list[str] = []  # hashed once per run: argon2 is slow on purpose
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def password_hash() -> str:
    """The argon2 hash of ``PASSWORD``."""
    if not _HASH:
        _HASH.append(_hasher.hash(PASSWORD))
    return _HASH[0]


@pytest.fixture
def web_settings(tmp_path: Path) -> Settings:
    """Settings of a test app: its own instance folder and secrets."""
    return replace(load_settings({}, {"instance_path": str(tmp_path / "instance")}), secret_key="s" * 32, history_key="k")


@pytest.fixture
def people(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> dict[str, str]:
    """Every province user with ``PASSWORD``; ``mustchange`` (a unit officer) holding a one-time password; ``target`` for admin actions.

    Returns each username's password.
    """
    passwords = {name: PASSWORD for name in province.actors}
    with db.write() as session:
        session.execute(update(User).values(password_hash=password_hash()))
        for name in ("mustchange", "target"):
            create_user(session, username=name, role="unit_officer", unit=session.merge(province.units["SNV"]),
                        full_name=f"Người dùng {name}", now=clock.now(), rt=rt, actor=CONSOLE, password=None)
    with db.write() as session:
        must = session.scalar(select(User).where(User.username == "mustchange"))
        assert must is not None
        passwords["mustchange"] = reset_password(session, must, now=clock.now(), rt=rt, actor=CONSOLE)
        session.execute(update(User).where(User.username == "target").values(password_hash=password_hash()))
    passwords["target"] = PASSWORD
    return passwords


@pytest.fixture
def app(db: Database, rt: Runtime, web_settings: Settings, people: dict[str, str]) -> Flask:
    """The web app on the test database, its clock the test clock."""
    return create_app({"TESTING": True}, settings=web_settings, db=db, runtime=rt)


def token(client: FlaskClient, path: str = "/sign-in") -> str:
    """The CSRF token of the page at ``path`` (or where it leads), as the client's browser would hold it."""
    page = client.get(path, follow_redirects=True)
    found = _TOKEN.search(page.get_data(as_text=True))
    assert found, f"no form token on {path} ({page.status_code})"
    return found.group(1)


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, *, page: str = "/sign-in", **kwargs: Any) -> TestResponse:
    """POST ``data`` to ``path`` with the CSRF token of ``page`` (the page the form is on)."""
    return client.post(path, data={"csrf_token": token(client, page), **(data or {})}, **kwargs)


def sign_in(client: FlaskClient, username: str, password: str = PASSWORD) -> TestResponse:
    """Sign ``client`` in through the form."""
    return post(client, "/sign-in", {"username": username, "password": password})


@pytest.fixture
def signed_in(app: Flask, people: dict[str, str]) -> Callable[[str], FlaskClient]:
    """A new client signed in as ``username`` (``anonymous``: not signed in)."""

    def make(username: str) -> FlaskClient:
        client = app.test_client()
        if username != "anonymous":
            response = sign_in(client, username, people[username])
            assert response.status_code == 302, response.get_data(as_text=True)
        return client

    return make


# The case pages' cases, files and notice (web-cases), for the route matrix and the browser checks.
from tests.web.api_support import tokens  # noqa: E402, F401  (a bearer token per user, for the API tests)
from tests.web.cases_support import world  # noqa: E402, F401
