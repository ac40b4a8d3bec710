"""The admin log: every administrative write leaves one chained row with who, when, before and after."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest
from sqlalchemy import delete, func, select, update

from qmsflow.engine import SYSTEM, CalendarOverrides, Conflict, Database, FixedClock, Runtime, WorkingCalendar, calendar_store
from qmsflow.engine.adminlog import canonical_bytes, verify
from qmsflow.engine.models import AdminLogEntry, AdminLogHead, Meta, Unit
from qmsflow.engine.replanning import replan_calendar
from qmsflow.engine.units import UnitKind, create_unit, set_contact, set_parent
from qmsflow.engine.users import create_user
from tests.conftest import HISTORY_KEY, PROVINCE_UNITS, PROVINCE_USERS, Province


def _rows(db: Database, after_seq: int = 0) -> list[AdminLogEntry]:
    with db.read() as session:
        rows = list(session.scalars(select(AdminLogEntry).where(AdminLogEntry.seq > after_seq).order_by(AdminLogEntry.seq)))
        session.expunge_all()
        return rows


def _last_seq(db: Database) -> int:
    with db.read() as session:
        return session.scalar(select(func.coalesce(func.max(AdminLogEntry.seq), 0))) or 0


def _problems(db: Database, key: bytes = HISTORY_KEY) -> list[str]:
    with db.read() as session:
        return [str(f) for f in verify(session, key)[1]]


def test_the_province_set_up_through_the_services_is_logged_and_verifies(db: Database, province: Province) -> None:
    rows = _rows(db)
    # each unit: created, then its head and ISO officer set; then each user
    assert len(rows) == 3 * len(PROVINCE_UNITS) + len(PROVINCE_USERS)
    assert {r.actor for r in rows} == {"system"}
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    with db.read() as session:
        assert verify(session, HISTORY_KEY) == (len(rows), [])


def test_creating_a_user_writes_one_row_without_the_password(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> None:
    start = _last_seq(db)
    with db.write() as session:
        user = create_user(session, username="snv.deputy", role="unit_officer", unit=session.merge(province.units["SNV"]),
                           email="d@snv.example", password="a long enough password", now=clock.now(), rt=rt, actor=province.actors["admin"])
    (row,) = _rows(db, start)
    assert (row.actor, row.action, row.object_kind, row.object_id, row.at) == ("admin", "user.create", "user", str(user.id), clock.now())
    assert row.before is None
    assert row.after == {"username": "snv.deputy", "full_name": "", "email": "d@snv.example", "role": "unit_officer",
                         "unit_id": province.units["SNV"].id, "active": True, "password": "set", "language": "vi"}
    # a refused write logs nothing: the row goes with the caller's transaction
    with pytest.raises(Conflict), db.write() as session:
        create_user(session, username="snv.deputy", role="viewer", now=clock.now(), rt=rt, actor=province.actors["admin"])
    assert _last_seq(db) == start + 1


def test_creating_a_unit_with_a_parent_writes_one_row(db: Database, rt: Runtime, province: Province) -> None:
    start = _last_seq(db)
    with db.write() as session:
        branch = create_unit(session, code="CCTDC", name="Chi cục TĐC", kind=UnitKind.BRANCH.value, valid_from=date(2025, 7, 1),
                             parent=session.merge(province.units["SKHCN"]), rt=rt, actor=province.actors["lead"])
    (row,) = _rows(db, start)
    assert (row.actor, row.action, row.object_id, row.before) == ("lead", "unit.create", str(branch.id), None)
    assert row.after == {"code": "CCTDC", "name": "Chi cục TĐC", "kind": "branch", "is_lead": False, "valid_from": "2025-07-01",
                         "valid_to": None, "parent_id": province.units["SKHCN"].id}


def test_a_parent_change_writes_one_row_with_the_old_and_new_parent(db: Database, rt: Runtime, province: Province) -> None:
    start = _last_seq(db)
    with db.write() as session:
        set_parent(session, session.merge(province.units["THCS-MT"]), session.merge(province.units["SGDDT"]), date(2026, 9, 1),
                   rt=rt, actor=province.actors["admin"])
    (row,) = _rows(db, start)
    assert (row.action, row.object_id) == ("unit.set_parent", str(province.units["THCS-MT"].id))
    assert row.before == {"parent_id": province.units["30301"].id, "valid_from": "2025-07-01"}
    assert row.after == {"parent_id": province.units["SGDDT"].id, "valid_from": "2026-09-01"}


def test_a_contact_change_writes_one_row_and_a_write_that_changes_nothing_writes_none(
    db: Database, rt: Runtime, province: Province
) -> None:
    start = _last_seq(db)
    snv = province.units["SNV"]
    with db.write() as session:
        set_contact(session, session.merge(snv), "head", "Nguyễn Văn A", email="a@snv.example", rt=rt, actor=province.actors["lead"])
    (row,) = _rows(db, start)
    assert (row.action, row.object_kind, row.object_id) == ("contact.set", "contact", f"{snv.id}:head")
    assert row.before == {"name": "Head of SNV", "email": "head@snv.example", "phone": None}
    assert row.after == {"name": "Nguyễn Văn A", "email": "a@snv.example", "phone": None}
    with db.write() as session:
        set_contact(session, session.merge(snv), "head", "Nguyễn Văn A", email="a@snv.example", rt=rt, actor=province.actors["lead"])
    assert _last_seq(db) == start + 1


def test_applying_a_calendar_logs_who_began_and_finished_it(db: Database, rt: Runtime, province: Province) -> None:
    with db.write() as session:  # the fixture stored the shipped calendar: seeding again does nothing
        assert not calendar_store.seed(session, rt.calendar, rt.history_key, SYSTEM, rt.clock.now())
    start = _last_seq(db)
    extra = CalendarOverrides.from_mapping({2026: {"days_off": ["2026-03-05"]}})
    changed = Runtime(registry=rt.registry, calendar=WorkingCalendar(extra), clock=rt.clock, history_key=rt.history_key)
    report = replan_calendar(db, changed, actor=province.actors["admin"])
    assert report.applied and report.moved == []
    began, finished = _rows(db, start)
    assert (began.actor, began.action) == ("admin", "calendar.replan")
    assert began.before == {"fingerprint": rt.calendar.fingerprint(), "holidays": rt.calendar.holidays_version}
    assert began.after == {"fingerprint": changed.calendar.fingerprint(), "holidays": rt.calendar.holidays_version, "days": 1}
    assert (finished.actor, finished.action) == ("admin", "calendar.apply")
    assert finished.before == {"fingerprint": rt.calendar.fingerprint()}
    assert finished.after == {"fingerprint": changed.calendar.fingerprint(), "deadlines_moved": 0}
    assert _problems(db) == []


def test_seeding_a_new_database_is_logged_as_the_system(db: Database, rt: Runtime) -> None:
    with db.write() as session:
        session.execute(delete(Meta))
    start = _last_seq(db)
    with db.write() as session:
        assert calendar_store.seed(session, rt.calendar, rt.history_key, SYSTEM, rt.clock.now())
    (row,) = _rows(db, start)
    assert (row.actor, row.action, row.before) == ("system", "calendar.apply", {"fingerprint": None})
    assert row.after == {"fingerprint": rt.calendar.fingerprint(), "deadlines_moved": 0}


def test_an_edited_row_is_reported(db: Database, province: Province) -> None:
    with db.write() as session:
        session.execute(update(AdminLogEntry).where(AdminLogEntry.seq == 5).values(actor="someone else"))
    problems = _problems(db)
    assert problems == ["admin log row 5: content does not match its hash (edited)"], problems


def test_a_row_rewritten_without_the_key_is_reported(db: Database, province: Province) -> None:
    with db.write() as session:
        row = session.scalar(select(AdminLogEntry).where(AdminLogEntry.seq == 3))
        assert row is not None
        row.after = {"name": "forged"}
        fields = {"at": row.at, "actor": row.actor, "action": row.action, "object_kind": row.object_kind,
                  "object_id": row.object_id, "before": row.before, "after": row.after}
        row.hash = hashlib.sha256(canonical_bytes(row.seq, fields, row.prev_hash)).hexdigest()
    problems = _problems(db)
    assert "admin log row 3: hash recomputed without the key" in problems
    assert "admin log row 4: does not chain to the row before it" in problems


def test_a_deleted_middle_row_is_reported(db: Database, province: Province) -> None:
    with db.write() as session:
        session.execute(delete(AdminLogEntry).where(AdminLogEntry.seq == 4))
    assert any("row 5" in p and "missing" in p for p in _problems(db))


def test_a_deleted_last_row_is_reported(db: Database, province: Province) -> None:
    last = _last_seq(db)
    with db.write() as session:
        session.execute(delete(AdminLogEntry).where(AdminLogEntry.seq == last))
    assert any("last rows deleted" in p for p in _problems(db))


def test_a_deleted_head_row_is_reported(db: Database, province: Province) -> None:
    with db.write() as session:
        session.execute(delete(AdminLogHead))
    assert any("chain head row is gone" in p for p in _problems(db))


def test_a_wrong_key_fails_every_row(db: Database, province: Province) -> None:
    assert len(_problems(db, b"another key")) == _last_seq(db)


def test_appends_continue_the_chain_across_transactions(db: Database, rt: Runtime, province: Province) -> None:
    with db.write() as session:
        unit = session.scalar(select(Unit).where(Unit.code == "SNV"))
        assert unit is not None
        set_contact(session, unit, "iso_officer", "Trần Thị B", rt=rt, actor=SYSTEM)
        set_contact(session, unit, "head", "Lê Văn C", rt=rt, actor=SYSTEM)
    rows = _rows(db)
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    with db.read() as session:
        head = session.get(AdminLogHead, 1)
        assert head is not None and (head.length, head.head) == (rows[-1].seq, rows[-1].hash)
    assert _problems(db) == []
