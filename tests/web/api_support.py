"""What the JSON API's tests share: a token per province user, and requests that carry one."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from qmsflow.engine import Database, Runtime
from qmsflow.engine.models import User
from qmsflow.engine.permissions import CONSOLE
from qmsflow.engine.tokens import create_token


def make_tokens(db: Database, rt: Runtime, usernames: list[str]) -> dict[str, str]:
    """A fresh token for each user (made by the console operator)."""
    out = {}
    with db.write() as session:
        for name in usernames:
            user = session.scalar(select(User).where(User.username == name))
            assert user is not None
            out[name] = create_token(session, rt, CONSOLE, user, name=f"test {name}")[1]
    return out


@pytest.fixture
def tokens(app: Flask, db: Database, rt: Runtime, people: dict[str, str]) -> dict[str, str]:
    """A bearer token for every province user."""
    return make_tokens(db, rt, sorted(people))


def api(client: FlaskClient, method: str, path: str, token: str | None, **kwargs: Any) -> TestResponse:
    """Call ``/api/v1`` + ``path`` with ``token`` as the bearer (None: no Authorization header)."""
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)
