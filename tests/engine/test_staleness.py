"""A form loaded earlier is stale when the case moved on or someone recorded its fields; a timer alone never."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from qmsflow.engine import SYSTEM, Actor, Database, FixedClock, NotFound, Runtime, ValidationFailed, advance, open_case
from qmsflow.engine.errors import FormStale
from qmsflow.engine.models import Case, HistoryEntry
from qmsflow.engine.staleness import check_form
from qmsflow.engine.sweep import sweep
from qmsflow.engine.users import create_user
from tests.conftest import Province, got, local


def _building(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> tuple[int, Actor, Actor]:
    with db.write() as session:
        unit = session.merge(province.units["THPT-TNH"])
        other = Actor.of(create_user(session, username="tnh.lan", role="unit_officer", full_name="Trần Thị Lan",
                                     unit=unit, now=clock.now(), rt=rt, actor=SYSTEM))
        case = open_case(session, rt, province.actors["lead"], unit, "qms_lifecycle")
        advance(session, rt, province.actors["tnh"], case.id, "approve_plan", {"plan_number": "12/KH", "plan_approved_on": "2026-01-05"})
        return case.id, province.actors["tnh"], other


def test_reminders_escalations_and_mark_overdue_leave_a_form_good(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    case_id, officer, _ = _building(db, rt, clock, province)
    # the build deadline (6 months) passes: reminders, the due step firing mark_overdue, the ladder
    assert sweep(db, rt, local(date(2026, 6, 22), 0, 5)).count == 1
    assert sweep(db, rt, local(date(2026, 9, 30))).count >= 3
    clock.set(local(date(2026, 9, 30)))
    with db.read() as session:
        kinds = set(session.scalars(select(HistoryEntry.kind).where(HistoryEntry.case_id == case_id)))
        assert {"reminder", "escalated"} <= kinds
        assert got(session, Case, case_id).data["overdue"] is True  # mark_overdue ran: the version moved
    with db.write() as session:
        version = check_form(session, rt, officer, case_id, "establish_committee", 2)
        assert version == 3
        advance(session, rt, officer, case_id, "establish_committee",
                {"committee_decision_number": "5/QĐ", "committee_decided_on": "2026-09-30"}, expected_version=version)


def test_someone_recording_the_forms_fields_makes_it_stale_and_says_who_and_what(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    case_id, officer, other = _building(db, rt, clock, province)
    with db.write() as session:
        advance(session, rt, other, case_id, "establish_committee",
                {"committee_decision_number": "5/QĐ", "committee_decided_on": "2026-01-05"})
    with db.write() as session:
        with pytest.raises(FormStale) as refused:
            check_form(session, rt, officer, case_id, "establish_committee", 2)
        (change,) = refused.value.changes
        assert (change.actor_name, change.event_label, change.moved) == ("Trần Thị Lan", "Thành lập Ban chỉ đạo ISO", False)
        assert change.fields == ("Số quyết định", "Ngày ký")
        assert (refused.value.expected, refused.value.actual) == (2, 3)
        # a form of another event, whose fields nobody touched, is still good
        assert check_form(session, rt, officer, case_id, "issue_documents", 2) == 3
        english = pytest.raises(FormStale)
        with english as in_english:
            check_form(session, rt, officer, case_id, "establish_committee", 2, language="en")
        assert in_english.value.changes[0].fields == ("Decision number", "Signed on")


def test_a_state_change_makes_every_form_stale_and_nothing_is_written(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    case_id, officer, other = _building(db, rt, clock, province)
    with db.write() as session:
        advance(session, rt, other, case_id, "establish_committee", {"committee_decision_number": "5/QĐ", "committee_decided_on": "2026-01-05"})
        advance(session, rt, other, case_id, "issue_documents",
                {"documents_decision_number": "6/QĐ", "documents_issued_on": "2026-01-05", "procedure_count": 12})
        advance(session, rt, other, case_id, "start_applying")
    with db.write() as session:
        before = session.scalar(select(func.count(HistoryEntry.id)))
        with pytest.raises(FormStale) as refused:
            check_form(session, rt, officer, case_id, "start_applying", 4)
        (change,) = refused.value.changes
        assert change.moved and (change.from_label, change.to_label) == ("Xây dựng", "Áp dụng")
        assert session.scalar(select(func.count(HistoryEntry.id))) == before


def test_out_of_scope_is_not_found_and_a_nonsense_version_is_refused(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    case_id, officer, _ = _building(db, rt, clock, province)
    with db.write() as session:
        with pytest.raises(NotFound):
            check_form(session, rt, province.actors["thcs"], case_id, "establish_committee", 2)
        with pytest.raises(NotFound):
            check_form(session, rt, officer, 999_999, "establish_committee", 1)
        for bad in (0, 9, "2", True, None):
            with pytest.raises(ValidationFailed):
                check_form(session, rt, officer, case_id, "establish_committee", bad)
