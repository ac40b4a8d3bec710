"""The tokens page: a person makes a token (shown once) and revokes it; an administrator sees and makes everyone's;
someone else's token is not found. And the `qmsflow tokens` commands."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import select

from qmsflow.engine import Database
from qmsflow.engine.models import ApiToken, User
from tests.web.conftest import post

SECRET = re.compile(r'id="new-token">(qmsf_[A-Za-z0-9_-]+)<')


def test_a_person_makes_a_token_that_works_once_shown_and_revokes_it(signed_in: Callable[[str], FlaskClient], db: Database) -> None:
    client = signed_in("tnh")
    made = post(client, "/tokens/", {"name": "một cửa", "expires": "31/12/2027"}, page="/tokens/")
    assert made.status_code == 200
    found = SECRET.search(made.get_data(as_text=True))
    assert found
    secret = found.group(1)
    with db.read() as session:
        token = session.scalar(select(ApiToken).where(ApiToken.name == "một cửa"))
        assert token is not None and token.token_hash != secret and secret.startswith(token.prefix)
        token_id, prefix = token.id, token.prefix
    assert client.get("/api/v1/units", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    listed = client.get("/tokens/").get_data(as_text=True)
    assert prefix in listed and secret not in listed
    # another officer cannot see or revoke it
    other = signed_in("snv")
    assert prefix not in other.get("/tokens/").get_data(as_text=True)
    assert post(other, f"/tokens/{token_id}/revoke", page="/tokens/").status_code == 404
    assert post(client, f"/tokens/{token_id}/revoke", page="/tokens/").status_code == 302
    assert client.get("/api/v1/units", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_an_administrator_makes_a_token_for_an_integrating_user(signed_in: Callable[[str], FlaskClient], db: Database) -> None:
    admin = signed_in("admin")
    refused = post(admin, "/tokens/", {"username": "nobody"}, page="/tokens/")
    assert refused.status_code == 400
    bad_day = post(admin, "/tokens/", {"expires": "2027-13-45"}, page="/tokens/")
    assert bad_day.status_code == 400
    made = post(admin, "/tokens/", {"username": "tnh", "name": "báo cáo"}, page="/tokens/")
    assert made.status_code == 200 and SECRET.search(made.get_data(as_text=True))
    assert "báo cáo" in admin.get("/tokens/").get_data(as_text=True)
    officer = signed_in("snv")
    assert post(officer, "/tokens/", {"username": "tnh"}, page="/tokens/").status_code == 200  # the field is ignored: their own
    with db.read() as session:
        owners = sorted(session.scalars(select(User.username).join(ApiToken, ApiToken.user_id == User.id)))
    assert owners == ["snv", "tnh"]
