"""Signing in and out: the throttle counted in the database, one-time passwords, sessions that end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from qmsflow.config import Settings, WebSettings
from qmsflow.engine import FixedClock, Runtime
from qmsflow.engine.db import Database
from qmsflow.engine.models import SignInFailure, User
from qmsflow.web import create_app
from tests.conftest import rows_committed
from tests.web.conftest import PASSWORD, post, sign_in


def _failures(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count(SignInFailure.id))) or 0)


def test_a_wrong_password_is_refused_on_the_page_with_the_username_kept(app: Flask, db: Database) -> None:
    client = app.test_client()
    response = sign_in(client, "tnh", "not the password")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Tên đăng nhập hoặc mật khẩu không đúng." in page and 'value="tnh"' in page
    assert client.get("/").status_code == 302
    assert _failures(db) == 1


def test_signing_in_brings_the_person_back_to_where_they_were_going(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/admin/log/").headers["Location"] == "/sign-in?next=/admin/log/"
    response = post(client, "/sign-in", {"username": "admin", "password": PASSWORD, "next": "/admin/log/"})
    assert response.headers["Location"] == "/admin/log/"
    other = app.test_client()
    assert post(other, "/sign-in", {"username": "admin", "password": PASSWORD, "next": "https://evil.example/"}).headers["Location"] == "/"


def test_five_failures_lock_the_username_in_every_app_on_the_database(
    app: Flask, db: Database, rt: Runtime, web_settings: Settings, clock: FixedClock
) -> None:
    first = app.test_client()
    for _ in range(5):
        sign_in(first, "tnh", "wrong password")
    second = create_app({"TESTING": True}, settings=web_settings, db=db, runtime=rt).test_client()  # another web process
    response = sign_in(second, "tnh", PASSWORD)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "tạm khoá" in page and "09:15 ngày 05/01/2026" in page  # 09:00 + 15 minutes, Vietnam time
    assert second.get("/").status_code == 302
    clock.advance(timedelta(minutes=15, seconds=1))
    assert sign_in(second, "tnh", PASSWORD).status_code == 302


def test_an_unknown_username_locks_the_same_way_so_nothing_tells_which_names_exist(app: Flask) -> None:
    client = app.test_client()
    answers = {sign_in(client, "nobody.here", "guess").get_data(as_text=True).count("không đúng") for _ in range(4)}
    assert answers == {1}
    assert "tạm khoá" in sign_in(client, "nobody.here", "guess").get_data(as_text=True)
    assert "tạm khoá" in sign_in(client, "Nobody.Here ", "guess").get_data(as_text=True)


def test_an_administrator_unlocks_a_locked_username(signed_in: Callable[[str], FlaskClient], app: Flask, db: Database) -> None:
    client = app.test_client()
    for _ in range(5):
        sign_in(client, "tnh", "wrong password")
    admin = signed_in("admin")
    with db.read() as session:
        tnh = session.scalar(select(User.id).where(User.username == "tnh"))
    page = admin.get("/admin/users/").get_data(as_text=True)
    assert "Tạm khoá đăng nhập đến 05/01/2026 09:15" in page
    response = post(admin, f"/admin/users/{tnh}/unlock")
    assert response.status_code == 302
    assert "Đã mở khoá đăng nhập." in admin.get(response.headers["Location"]).get_data(as_text=True)
    assert sign_in(client, "tnh", PASSWORD).status_code == 302
    assert "user.unlock" in admin.get("/admin/log/").get_data(as_text=True) or "Mở khoá đăng nhập" in admin.get("/admin/log/").get_data(as_text=True)


def test_fifty_failures_from_one_address_refuse_it_and_the_address_comes_from_the_trusted_proxy(
    db: Database, rt: Runtime, web_settings: Settings, people: dict[str, str]
) -> None:
    behind_proxy = replace(web_settings, web=WebSettings(trusted_proxies=1))
    app = create_app({"TESTING": True}, settings=behind_proxy, db=db, runtime=rt)
    office = app.test_client()
    office.environ_base.update(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7")
    for n in range(50):
        sign_in(office, f"guess{n}", "wrong")  # 50 names: none reaches its own limit
    refused = sign_in(office, "admin", PASSWORD).get_data(as_text=True)
    assert "từ máy này" in refused
    elsewhere = app.test_client()
    elsewhere.environ_base.update(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.2")  # same proxy, another office
    assert sign_in(elsewhere, "admin", PASSWORD).status_code == 302
    with db.read() as session:
        assert set(session.scalars(select(SignInFailure.client_address))) == {"203.0.113.7"}


def test_a_one_time_password_must_be_changed_before_anything_else(app: Flask, people: dict[str, str], db: Database) -> None:
    client = app.test_client()
    response = sign_in(client, "mustchange", people["mustchange"])
    assert response.headers["Location"] == "/account/password"
    assert client.get("/").headers["Location"] == "/account/password"
    refused = post(client, "/account/password", {"current_password": people["mustchange"], "new_password": "short", "confirm_password": "short"},
                   page="/account/password")
    assert refused.status_code == 400 and "ít nhất 10 ký tự" in refused.get_data(as_text=True)
    done = post(client, "/account/password", {"current_password": people["mustchange"], "new_password": "một mật khẩu mới dài",
                                              "confirm_password": "một mật khẩu mới dài"}, page="/account/password")
    assert done.status_code == 302
    assert client.get("/").status_code == 200
    with db.read() as session:
        assert session.scalar(select(User.must_change_password).where(User.username == "mustchange")) is False


def test_changing_my_password_ends_my_other_sessions_but_not_this_one(app: Flask) -> None:
    here, there = app.test_client(), app.test_client()
    sign_in(here, "tnh")
    sign_in(there, "tnh")
    response = post(here, "/account/password", {"current_password": PASSWORD, "new_password": "mật khẩu mới của tôi",
                                                "confirm_password": "mật khẩu mới của tôi"}, page="/account/password")
    assert response.status_code == 302
    assert here.get("/").status_code == 200
    assert there.get("/").headers["Location"].startswith("/sign-in")


def test_a_reset_or_a_deactivation_ends_the_users_sessions(signed_in: Callable[[str], FlaskClient], db: Database) -> None:
    admin, tnh, snv = signed_in("admin"), signed_in("tnh"), signed_in("snv")
    with db.read() as session:
        ids = dict(session.execute(select(User.username, User.id).where(User.username.in_(["tnh", "snv"]))).tuples().all())
    shown = post(admin, f"/admin/users/{ids['tnh']}/password", page=f"/admin/users/{ids['tnh']}/password")
    assert shown.status_code == 200 and 'id="one-time-password"' in shown.get_data(as_text=True)
    assert shown.headers["Cache-Control"] == "no-store"
    assert tnh.get("/").headers["Location"].startswith("/sign-in")
    assert post(admin, f"/admin/users/{ids['snv']}/deactivate").status_code == 302
    assert snv.get("/").headers["Location"].startswith("/sign-in")
    assert sign_in(signed_in("anonymous"), "snv").status_code == 200  # refused: deactivated


def test_an_idle_session_ends_after_the_idle_timeout(signed_in: Callable[[str], FlaskClient], clock: FixedClock) -> None:
    client = signed_in("tnh")
    clock.advance(timedelta(hours=7, minutes=59))
    assert client.get("/").status_code == 200
    clock.advance(timedelta(hours=7, minutes=59))  # each request starts the idle time again
    assert client.get("/").status_code == 200
    clock.advance(timedelta(hours=8, minutes=1))
    response = client.get("/", follow_redirects=True)
    assert "quá lâu không thao tác" in response.get_data(as_text=True)


def test_signing_out_ends_the_session(signed_in: Callable[[str], FlaskClient]) -> None:
    client = signed_in("tnh")
    response = post(client, "/sign-out", page="/")
    assert response.headers["Location"] == "/sign-in"
    assert client.get("/").status_code == 302


def test_a_post_without_its_csrf_token_is_refused_and_changes_nothing(app: Flask, db: Database, signed_in: Callable[[str], FlaskClient]) -> None:
    anonymous, admin = app.test_client(), signed_in("admin")
    before = rows_committed(db)
    refused = [
        anonymous.post("/sign-in", data={"username": "tnh", "password": PASSWORD}),
        anonymous.post("/sign-in", data={"username": "tnh", "password": "wrong", "csrf_token": "forged"}),
        admin.post("/admin/users/new", data={"username": "sneaky", "role": "admin"}),
        admin.post("/sign-out"),
        admin.post("/language", data={"lang": "en"}),
    ]
    assert [r.status_code for r in refused] == [400] * 5
    assert "Biểu mẫu đã hết hạn" in refused[2].get_data(as_text=True)
    assert rows_committed(db) == before
    assert admin.get("/admin/users/").status_code == 200  # still signed in, still Vietnamese
