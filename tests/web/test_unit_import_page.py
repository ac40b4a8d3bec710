"""/admin/units/import: upload, preview of problems or changes, confirmation that commits all or nothing."""

from __future__ import annotations

import io
from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import select

from qmsflow.engine.db import Database
from qmsflow.engine.models import UnitVersion, User
from qmsflow.engine.unitimport import UNIT_COLUMNS
from tests.conftest import rows_committed
from tests.web.conftest import token

HEADER = ",".join(UNIT_COLUMNS)
PAGE = "/admin/units/import/"


def _upload(client: FlaskClient, units: str, users: str | None = None, as_of: str = "2026-01-05") -> tuple[int, str]:
    data: dict[str, object] = {"csrf_token": token(client, PAGE), "action": "preview", "as_of": as_of,
                               "units_file": (io.BytesIO(units.encode("utf-8")), "units.csv")}
    if users is not None:
        data["users_file"] = (io.BytesIO(users.encode("utf-8")), "users.csv")
    response = client.post(PAGE, data=data, content_type="multipart/form-data")
    return response.status_code, response.get_data(as_text=True)


def _confirm(client: FlaskClient, page: str) -> tuple[int, str]:
    import re

    fields = dict(re.findall(r'name="(units_data|users_data|as_of)" value="([^"]*)"', page))
    response = client.post(PAGE, data={"csrf_token": token(client, PAGE), "action": "confirm", **fields})
    return response.status_code, response.get_data(as_text=True)


def test_a_bad_file_is_previewed_with_its_rows_and_changes_nothing(signed_in: Callable[[str], FlaskClient], db: Database) -> None:
    lead = signed_in("lead")
    before = rows_committed(db)
    status, page = _upload(lead, f"{HEADER}\n90001,UBND xã A,castle,91,2025-07-01,no,,,,,,\n")
    assert status == 400
    assert "dòng 2" in page and "castle" in page and "Xác nhận nhập" not in page
    assert rows_committed(db) == before


def test_preview_then_confirm_imports_and_shows_one_time_passwords_once(signed_in: Callable[[str], FlaskClient], db: Database) -> None:
    admin = signed_in("admin")
    units = f"{HEADER}\n90001,UBND xã Vĩnh An,commune_pc,91,2025-07-01,no,Ông A,a@vinhan.example,,,,\n"
    users = "username,full_name,email,role,unit_code,language\niso.vinhan,Bà B,,unit_officer,90001,vi\n"
    before = rows_committed(db)
    status, page = _upload(admin, units, users)
    assert status == 200 and "Xác nhận nhập" in page and "90001" in page
    assert rows_committed(db) == before  # a preview writes nothing
    status, done = _confirm(admin, page)
    assert status == 200 and "iso.vinhan" in done and "qf-secret" in done
    with db.read() as session:
        assert session.scalar(select(UnitVersion.name).where(UnitVersion.code == "90001")) == "UBND xã Vĩnh An"
        assert session.scalar(select(User.must_change_password).where(User.username == "iso.vinhan")) is True
    # the same file again: nothing to change
    status, page = _upload(admin, units, users)
    assert status == 200 and "Không có gì để thay đổi" in page


def test_a_confirmation_refused_meanwhile_changes_nothing(signed_in: Callable[[str], FlaskClient], db: Database) -> None:
    admin = signed_in("admin")
    status, page = _upload(admin, f"{HEADER}\n90002,UBND xã B,commune_pc,91,2025-07-01,no,,,,,,\n")
    assert status == 200
    tampered = page.replace('name="as_of" value="2026-01-05"', 'name="as_of" value="2025-01-01"')  # before the row's first day
    before = rows_committed(db)
    status, refused = _confirm(admin, tampered)
    assert status == 400 and "không có gì thay đổi" in refused
    assert rows_committed(db) == before


def test_a_lead_cannot_import_accounts(signed_in: Callable[[str], FlaskClient], db: Database) -> None:
    lead = signed_in("lead")
    before = rows_committed(db)
    status, _page = _upload(lead, f"{HEADER}\n", "username,role,unit_code\nxx,viewer,\n")
    assert status == 403
    assert rows_committed(db) == before
