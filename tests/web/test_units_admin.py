"""Administering units and contacts through the pages: each change logged, each refusal changing nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from flask.testing import FlaskClient
from sqlalchemy import select

from qmsflow.engine import Database
from qmsflow.engine.models import AdminLogEntry, Contact, Unit, UnitParent, UnitVersion
from tests.conftest import Province, rows_committed
from tests.web.cases_support import World
from tests.web.conftest import post


def _actions(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(AdminLogEntry.action).order_by(AdminLogEntry.seq)))


def test_the_lead_creates_a_unit_renames_it_from_a_date_and_sets_its_contact(
    signed_in: Callable[[str], FlaskClient], db: Database
) -> None:
    lead = signed_in("lead")
    page = "/admin/units/new"
    response = post(lead, page, {"code": "30316", "name": "UBND xã Mỹ Hoà Hưng", "kind": "commune_pc",
                                 "valid_from": "01/07/2025", "parent_code": "91"}, page=page)
    assert response.status_code == 302
    with db.read() as session:
        unit = session.scalar(select(Unit).where(Unit.code == "30316"))
        assert unit is not None
        unit_id = unit.id
    edit = f"/admin/units/{unit_id}"
    assert post(lead, edit, {"on": "01/01/2026", "code": "30316", "name": "UBND xã Mỹ Hòa Hưng", "kind": "commune_pc"},
                page=edit).status_code == 302
    assert post(lead, f"{edit}/contacts/iso_officer", {"iso_officer_name": "Trần Văn Bình", "iso_officer_email": "binh@myhoahung.gov.vn"},
                page=edit).status_code == 302
    with db.read() as session:
        names = [(v.name, v.valid_from, v.valid_to) for v in session.scalars(
            select(UnitVersion).where(UnitVersion.unit_id == unit_id).order_by(UnitVersion.valid_from))]
        contact = session.scalar(select(Contact.name).where(Contact.unit_id == unit_id))
    assert names == [("UBND xã Mỹ Hoà Hưng", date(2025, 7, 1), date(2026, 1, 1)), ("UBND xã Mỹ Hòa Hưng", date(2026, 1, 1), None)]
    assert contact == "Trần Văn Bình"
    assert _actions(db)[-3:] == ["unit.create", "unit.change", "contact.set"]
    assert "UBND xã Mỹ Hoà Hưng" in lead.get(f"/units/{unit_id}").get_data(as_text=True)  # the name before


def test_a_parent_change_first_says_what_moves_then_moves_it(
    signed_in: Callable[[str], FlaskClient], db: Database, province: Province, world: World
) -> None:
    admin = signed_in("admin")
    path = f"/admin/units/{world.unit}/parent"
    before = rows_committed(db)
    preview = post(admin, path, {"parent_code": "30301", "on": "01/02/2026"}, page=path)
    text = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Sở Giáo dục và Đào tạo" in text and "UBND phường Mỹ Thới" in text
    assert "1 hồ sơ đang mở" in text
    assert rows_committed(db) == before  # the preview changes nothing
    assert post(admin, path, {"parent_code": "30301", "on": "01/02/2026", "confirm": "1"}, page=path).status_code == 302
    with db.read() as session:
        links = [(p.parent_id, p.valid_from, p.valid_to) for p in session.scalars(
            select(UnitParent).where(UnitParent.unit_id == world.unit).order_by(UnitParent.valid_from))]
    gddt, mythoi = province.units["SGDDT"].id, province.units["30301"].id
    assert links == [(gddt, date(2025, 7, 1), date(2026, 2, 1)), (mythoi, date(2026, 2, 1), None)]
    assert _actions(db)[-1] == "unit.change"


def test_ending_a_unit_with_open_cases_is_refused_and_changes_nothing(
    signed_in: Callable[[str], FlaskClient], db: Database, world: World, province: Province
) -> None:
    lead = signed_in("lead")
    path = f"/admin/units/{world.unit}/end"
    before = rows_committed(db)
    refused = post(lead, path, {"on": "01/03/2026"}, page=path)
    assert refused.status_code == 400 and "hồ sơ đang mở" in refused.get_data(as_text=True)
    assert rows_committed(db) == before
    # a unit without cases ends
    snv = province.units["SNV"].id
    assert post(lead, f"/admin/units/{snv}/end", {"on": "01/03/2026"}, page=f"/admin/units/{snv}/end").status_code == 302
    with db.read() as session:
        ended = session.get(Unit, snv)
        assert ended is not None and ended.valid_to == date(2026, 3, 1)
    assert _actions(db)[-1] == "unit.end"


def test_refused_forms_change_nothing(signed_in: Callable[[str], FlaskClient], db: Database, world: World) -> None:
    lead = signed_in("lead")
    before = rows_committed(db)
    new = "/admin/units/new"
    assert post(lead, new, {"code": "91", "name": "Trùng mã", "kind": "commune_pc", "valid_from": "01/01/2026"}, page=new).status_code == 400
    assert post(lead, new, {"code": "X1", "name": "Sai ngày", "kind": "commune_pc", "valid_from": "31/02/2026"}, page=new).status_code == 400
    edit = f"/admin/units/{world.unit}"
    assert post(lead, edit, {"on": "01/01/2026", "code": "", "name": "", "kind": "nope"}, page=edit).status_code == 400
    assert post(lead, f"{edit}/contacts/head", {"head_name": "A", "head_email": "not-an-email"}, page=edit).status_code == 400
    parent = f"/admin/units/{world.unit}/parent"
    assert post(lead, parent, {"parent_code": "KHONG-CO", "on": "01/02/2026", "confirm": "1"}, page=parent).status_code == 400
    assert post(lead, parent, {"parent_code": "THPT-TNH", "on": "01/02/2026", "confirm": "1"}, page=parent).status_code == 400
    assert rows_committed(db) == before
    assert signed_in("gddt").post(new, data={}).status_code in (400, 403)  # no token, and not theirs either way
