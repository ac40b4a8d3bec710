"""The administrator's users pages: every change through the engine, logged, errors next to their fields."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from qmsflow.engine.db import Database
from qmsflow.engine.models import AdminLogEntry, User
from tests.web.conftest import post, sign_in


def _user(db: Database, username: str) -> User:
    with db.read() as session:
        user = session.scalar(select(User).where(User.username == username))
        assert user is not None
        session.expunge(user)  # kept as read: the read session's rollback would expire it
        return user


def _last_log(db: Database) -> AdminLogEntry:
    with db.read() as session:
        entry = session.scalar(select(AdminLogEntry).order_by(AdminLogEntry.seq.desc()).limit(1))
        assert entry is not None
        session.expunge(entry)
        return entry


def test_creating_a_user_shows_a_one_time_password_that_signs_in_once(
    signed_in: Callable[[str], FlaskClient], app: Flask, db: Database
) -> None:
    admin = signed_in("admin")
    response = post(admin, "/admin/users/new", {"username": "stp.iso", "full_name": "Đỗ Thị Ngọc", "email": "ngoc@stp.example",
                                                "role": "unit_officer", "unit_code": "SNV"}, page="/admin/users/new")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Đã tạo tài khoản stp.iso" in page
    issued = re.search(r'id="one-time-password">([^<]+)<', page)
    assert issued
    created = _user(db, "stp.iso")
    assert (created.full_name, created.role, created.must_change_password) == ("Đỗ Thị Ngọc", "unit_officer", True)
    assert _last_log(db).action == "user.reset_password" and _last_log(db).actor == "admin"
    newcomer = app.test_client()
    assert sign_in(newcomer, "stp.iso", issued.group(1)).headers["Location"] == "/account/password"


def test_a_refused_form_shows_each_problem_next_to_its_field_with_the_values_kept(
    signed_in: Callable[[str], FlaskClient], db: Database
) -> None:
    admin = signed_in("admin")
    before = _last_log(db).seq
    response = post(admin, "/admin/users/new", {"username": "Bad Name", "full_name": "Lê Văn Hùng", "email": "not-an-email",
                                                "role": "unit_officer", "unit_code": "NOPE"}, page="/admin/users/new")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="unit_code-error">Không có đơn vị nào mang mã này vào hôm nay.' in page
    assert 'value="Lê Văn Hùng"' in page and 'value="NOPE"' in page
    assert '<a href="#unit_code">' in page  # the error summary links to the field
    response = post(admin, "/admin/users/new", {"username": "Bad Name", "email": "not-an-email", "role": "supervisor"},
                    page="/admin/users/new")
    page = response.get_data(as_text=True)
    assert 'id="username-error">Tên đăng nhập gồm 2 đến 64 ký tự' in page
    assert 'id="email-error">Địa chỉ thư điện tử' in page and 'id="unit_code-error">Vai trò này cần một đơn vị' in page
    taken = post(admin, "/admin/users/new", {"username": "tnh", "role": "viewer"}, page="/admin/users/new")
    assert "Tên đăng nhập này đã có người dùng." in taken.get_data(as_text=True)
    assert _last_log(db).seq == before


def test_editing_a_user_records_before_and_after_and_the_log_page_shows_it(
    signed_in: Callable[[str], FlaskClient], db: Database
) -> None:
    admin = signed_in("admin")
    tnh = _user(db, "tnh")
    response = post(admin, f"/admin/users/{tnh.id}", {"full_name": "Huỳnh Thị Mai", "email": "mai@tnh.example", "role": "unit_officer",
                                                      "unit_code": "THCS-MT"}, page=f"/admin/users/{tnh.id}")
    assert response.status_code == 302
    entry = _last_log(db)
    assert entry.action == "user.update" and entry.before and entry.after
    assert (entry.before["full_name"], entry.after["full_name"]) == ("", "Huỳnh Thị Mai")
    page = admin.get("/admin/log/").get_data(as_text=True)
    assert "Sửa thông tin tài khoản" in page and "<ins>Huỳnh Thị Mai</ins>" in page
    unchanged = post(admin, f"/admin/users/{tnh.id}", {"full_name": "Huỳnh Thị Mai", "email": "mai@tnh.example", "role": "unit_officer",
                                                       "unit_code": "THCS-MT"}, page=f"/admin/users/{tnh.id}")
    assert "Không có gì thay đổi." in admin.get(unchanged.headers["Location"]).get_data(as_text=True)
    assert _last_log(db).seq == entry.seq


def test_an_administrator_cannot_deactivate_themselves(signed_in: Callable[[str], FlaskClient], db: Database) -> None:
    admin = signed_in("admin")
    me = _user(db, "admin")
    response = post(admin, f"/admin/users/{me.id}/deactivate", page="/admin/users/")
    assert "Bạn không thể tự khoá tài khoản của chính mình." in admin.get(response.headers["Location"]).get_data(as_text=True)
    assert _user(db, "admin").active
