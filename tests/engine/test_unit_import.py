"""The import and export of units and users: every bad row named, all or nothing, idempotent, round trip."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from qmsflow.engine import SYSTEM, Database, ImportRefused, NotPermitted, Runtime
from qmsflow.engine.models import AdminLogEntry, Unit, User
from qmsflow.engine.permissions import CONSOLE
from qmsflow.engine.unitimport import (
    UNIT_COLUMNS,
    USER_COLUMNS,
    apply_import,
    export_units,
    export_users,
    plan_import,
    write_table,
)
from qmsflow.engine.units import unit_by_code, version_on
from qmsflow.engine.users import check_password
from tests.conftest import Province, rows_committed

AS_OF = date(2026, 1, 5)
HEADER = ",".join(UNIT_COLUMNS)


def units_csv(*rows: str, header: str = HEADER, bom: bool = False) -> bytes:
    return (("\ufeff" if bom else "") + "\n".join([header, *rows]) + "\n").encode("utf-8")


def row(code: str, name: str = "", kind: str = "commune_pc", parent: str = "91", start: str = "2025-07-01", lead: str = "no",
        head: str = "", head_email: str = "") -> str:
    return ",".join([code, name or f"UBND xã {code}", kind, parent, start, lead, head, head_email, "", "", "", ""])


def problems_of(db: Database, rt: Runtime, data: bytes, users: bytes | None = None) -> list[tuple[int, str, str]]:
    with db.read() as session:
        plan = plan_import(session, CONSOLE, data, users_data=users, as_of=AS_OF)
    return [(p.row, p.column, p.problem.code) for p in plan.problems]


def test_a_thousand_rows_with_one_bad_row_commit_nothing_and_name_it_then_the_fixed_file_imports(
    db: Database, rt: Runtime, province: Province
) -> None:
    rows = [row(str(40000 + i), head=f"Chủ tịch {i}", head_email=f"ct{i}@xa.example") for i in range(1000)]
    rows[636] = row("40636", parent="99999")  # file row 638: the header is row 1
    before = rows_committed(db)
    with pytest.raises(ImportRefused) as info, db.write() as session:
        apply_import(session, rt, CONSOLE, units_csv(*rows), as_of=AS_OF)
    assert [(p.row, p.column, p.problem.code) for p in info.value.rows] == [(638, "parent_code", "unknown_parent")]
    assert "dòng 638" in info.value.rows[0].render("vi") and "row 638" in info.value.rows[0].render("en")
    assert rows_committed(db) == before  # read through a second connection
    rows[636] = row("40636", head="Chủ tịch 636", head_email="ct636@xa.example")
    data = units_csv(*rows)
    with db.write() as session:
        result = apply_import(session, rt, CONSOLE, data, as_of=AS_OF)
    assert result.plan.counts()["units_created"] == 1000
    with db.read() as session:
        unit = unit_by_code(session, "40636", AS_OF)
        assert unit.contacts[0].name == "Chủ tịch 636"
        exported = export_units(session, as_of=AS_OF, fmt="csv")
        log_length = session.scalar(select(func.count(AdminLogEntry.seq)))
    # the same file again, and its export, change nothing
    for again in (data, exported):
        snapshot = rows_committed(db)
        with db.write() as session:
            result = apply_import(session, rt, CONSOLE, again, as_of=AS_OF)
        assert result.plan.changes == []
        assert rows_committed(db) == snapshot
    with db.read() as session:
        assert session.scalar(select(func.count(AdminLogEntry.seq))) == log_length


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_an_export_imports_again_with_no_change_in_either_format(db: Database, rt: Runtime, province: Province, fmt: str) -> None:
    with db.write() as session:
        unit = session.merge(province.units["SNV"])
        from qmsflow.engine.units import set_contact

        set_contact(session, unit, "head", "=HYPERLINK(\"http://evil\")", phone="+84 296 3852 000", rt=rt, actor=SYSTEM)
    with db.read() as session:
        units, users = export_units(session, as_of=AS_OF, fmt=fmt), export_users(session, as_of=AS_OF, fmt=fmt)
    if fmt == "csv":
        text = units.decode("utf-8-sig")
        assert "'=HYPERLINK" in text and "'+84 296" in text  # not run as a formula by a spreadsheet
    else:
        from io import BytesIO

        from openpyxl import load_workbook

        sheet = load_workbook(BytesIO(units)).worksheets[0]
        assert all(not str(c.value or "").startswith("=") for r in sheet.iter_rows() for c in r)
    before = rows_committed(db)
    with db.write() as session:
        result = apply_import(session, rt, CONSOLE, units, users_data=users, as_of=AS_OF)
    assert result.plan.changes == [] and result.passwords == ()
    assert result.plan.unchanged == len(province.units) + len(province.actors)
    assert rows_committed(db) == before


def test_changes_go_through_the_unit_services_as_new_versions(db: Database, rt: Runtime, province: Province) -> None:
    data = units_csv(row("30301", name="UBND phường Mỹ Thới mới", parent="SNV"), row("SNV", "Sở Nội vụ", "department", "91", lead="no"))
    with db.write() as session:
        plan = apply_import(session, rt, CONSOLE, data, as_of=AS_OF).plan
    assert [(c.key, c.action, [x[0] for x in c.changes]) for c in plan.changes] == [("30301", "change", ["name", "parent_code"])]
    with db.read() as session:
        unit_id = province.units["30301"].id
        assert version_on(session, unit_id, date(2025, 12, 31)).name == "UBND phường Mỹ Thới"  # type: ignore[union-attr]
        assert version_on(session, unit_id, AS_OF).name == "UBND phường Mỹ Thới mới"  # type: ignore[union-attr]
        actions = list(session.scalars(select(AdminLogEntry.action).where(AdminLogEntry.object_id == str(unit_id))))
        assert actions[-1] == "unit.change"


def test_the_lead_flag_can_be_handed_over_in_one_file(db: Database, rt: Runtime, province: Province) -> None:
    data = units_csv(row("SKHCN", "Sở Khoa học và Công nghệ", "department", lead="no"), row("SNV", "Sở Nội vụ", "department", lead="yes"))
    with db.write() as session:
        apply_import(session, rt, CONSOLE, data, as_of=AS_OF)
    with db.read() as session:
        from qmsflow.engine.units import lead_unit

        assert lead_unit(session, AS_OF).id == province.units["SNV"].id  # type: ignore[union-attr]


def test_every_kind_of_bad_row_is_listed_with_its_row_number(db: Database, rt: Runtime, province: Province) -> None:
    data = units_csv(
        row("50001", parent="NOPE"),  # 2 unknown parent
        row("50002", kind="castle"),  # 3 unknown kind
        row("50003", start="2025-13-01"),  # 4 not a real date
        row("50004", start="1/7/2025"),  # 5 not a date
        row("50005", head="Ông A", head_email="not-an-email"),  # 6 bad e-mail
        row("50006"),  # 7
        row("50006"),  # 8 the same row again
        row("50006", name="Khác"),  # 9 the same code, another unit
        row("SNV", "Sở Nội vụ", "department", start="2020-01-01"),  # 10 the unit exists since 2025-07-01
        row("50010", start="2026-02-01"),  # 11 after the import date
        row("50011", lead="maybe"),  # 12 not a boolean
        row("50012", lead="yes"),  # 13 the lead unit is SKHCN, which the file does not hand over
        row("50013", parent="50013"),  # 14 under itself
        row("50014", parent="50015"),  # 15 a circle of parents
        row("50015", parent="50014"),  # 16
        ",".join(["50016", "UBND", "commune_pc", "91", "2025-07-01", "no", "", "", "0296", "", "", ""]),  # 17 phone, no name
        "50017,,commune_pc,91,2025-07-01,no,,,,,,",  # 18 no name
        row("50018") + ",extra",  # 19 a cell beyond the header
    )
    found = problems_of(db, rt, data)
    assert found == [
        (2, "parent_code", "unknown_parent"), (3, "kind", "unknown_kind"), (4, "valid_from", "not_a_real_date"),
        (5, "valid_from", "not_a_date"), (6, "head_email", "not_an_email"), (8, "code", "duplicate_row"),
        (9, "code", "code_twice"), (10, "valid_from", "valid_from_differs"), (11, "valid_from", "after_as_of"),
        (12, "is_lead", "not_a_boolean"), (13, "is_lead", "lead_taken"), (14, "parent_code", "under_itself"),
        (15, "parent_code", "parent_cycle"), (16, "parent_code", "parent_cycle"), (17, "head_name", "contact_name_needed"),
        (18, "name", "required"), (19, "", "extra_cells"),
    ]


def test_a_code_held_by_another_unit_in_another_period_is_refused(db: Database, rt: Runtime, province: Province) -> None:
    from qmsflow.engine.units import create_unit

    with db.write() as session:
        create_unit(session, code="30307", name="Phường Mỹ Long (cũ)", kind="commune_pc", valid_from=date(2008, 1, 1),
                    valid_to=date(2025, 7, 1), rt=rt, actor=SYSTEM)
    # the old 30307 ended on 1 July 2025: a new unit may take the code from then, not before
    assert problems_of(db, rt, units_csv(row("30307", start="2025-07-01"))) == []
    assert problems_of(db, rt, units_csv(row("30307", start="2025-01-01"))) == [(2, "code", "code_taken")]


def test_two_units_marked_lead_in_one_file(db: Database, rt: Runtime) -> None:
    data = units_csv(row("A1", parent="", lead="yes"), row("A2", parent="", lead="yes"))
    assert problems_of(db, rt, data) == [(3, "is_lead", "lead_twice")]


def test_bad_files_are_named_not_tracebacks(db: Database, rt: Runtime) -> None:
    assert problems_of(db, rt, b"") == [(0, "", "import_empty")]
    assert problems_of(db, rt, "code,tên\n".encode("cp1258", errors="replace") + b"\xff\xfe") == [(0, "", "import_not_utf8")]
    assert problems_of(db, rt, b"PK\x03\x04garbage") == [(0, "", "import_unreadable")]
    assert problems_of(db, rt, units_csv(header="code,name,colour")) == [(1, "", "unknown_columns"), (1, "", "missing_columns")]
    assert problems_of(db, rt, units_csv(header=HEADER + ",code")) == [(1, "", "columns_twice")]


def test_a_csv_with_a_byte_order_mark_or_semicolons_reads_the_same(db: Database, rt: Runtime, province: Province) -> None:
    plain = units_csv(row("60001", name="Xã Vĩnh An"))
    with db.read() as session:
        a = plan_import(session, CONSOLE, plain, as_of=AS_OF)
        b = plan_import(session, CONSOLE, units_csv(row("60001", name="Xã Vĩnh An"), bom=True), as_of=AS_OF)
        c = plan_import(session, CONSOLE, plain.replace(b",", b";"), as_of=AS_OF)
    assert a.changes == b.changes == c.changes and a.ok


def test_xlsx_numbers_and_dates_read_as_codes_and_days(db: Database, rt: Runtime, province: Province) -> None:
    from io import BytesIO

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(list(UNIT_COLUMNS))
    sheet.append([30604, "UBND xã Vĩnh An", "commune_pc", 91, date(2025, 7, 1), False])
    out = BytesIO()
    book.save(out)
    with db.write() as session:
        apply_import(session, rt, CONSOLE, out.getvalue(), as_of=AS_OF)
        assert unit_by_code(session, "30604", AS_OF).valid_from == date(2025, 7, 1)


def test_users_get_one_time_passwords_and_bad_user_rows_are_named(db: Database, rt: Runtime, province: Province) -> None:
    header = ",".join(USER_COLUMNS)
    bad = f"{header}\nNew.Officer,Nguyễn Văn A,a@x.example,unit_officer,30301,vi\nb,B,b@,boss,,fr\nnew.officer,,,,,\ncc,C,,unit_officer,,vi\ndd,D,,viewer,ZZZ,vi\n"
    found = problems_of(db, rt, units_csv(), bad.encode())
    assert found == [
        (3, "username", "username_format"), (3, "email", "not_an_email"), (3, "role", "one_of"), (3, "language", "one_of"),
        (4, "username", "username_twice"), (5, "unit_code", "unit_needed"), (6, "unit_code", "unknown_unit_code"),
    ]
    good = f"{header}\nnew.officer,Nguyễn Văn A,a@x.example,unit_officer,60002,en\n".encode()
    with db.write() as session:
        result = apply_import(session, rt, CONSOLE, units_csv(row("60002")), users_data=good, as_of=AS_OF)
    [(username, password)] = result.passwords
    with db.read() as session:
        user = session.scalar(select(User).where(User.username == "new.officer"))
        assert user is not None and user.must_change_password and user.language == "en"
        assert check_password(user, password) and user.password_hash and password not in user.password_hash
        assert session.get(Unit, user.unit_id).code == "60002"  # type: ignore[union-attr]


def test_a_lead_may_import_units_but_not_users(db: Database, rt: Runtime, province: Province) -> None:
    lead = province.actors["lead"]
    with db.read() as session:
        assert plan_import(session, lead, units_csv(row("70001")), as_of=AS_OF).ok
        with pytest.raises(NotPermitted):
            plan_import(session, lead, units_csv(), users_data=b"username,role,unit_code\n", as_of=AS_OF)
        with pytest.raises(NotPermitted):
            plan_import(session, province.actors["gddt"], units_csv(), as_of=AS_OF)


def test_write_table_refuses_an_unknown_format() -> None:
    from qmsflow.engine import ValidationFailed

    with pytest.raises(ValidationFailed):
        write_table(UNIT_COLUMNS, [], "ods")
