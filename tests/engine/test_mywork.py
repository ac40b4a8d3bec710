"""My work: each role's list, its order, its buttons, and one statement a page whatever the province's size."""

from __future__ import annotations

from datetime import date

import pytest

from qmsflow.engine import SYSTEM, Database, FixedClock, Runtime, ValidationFailed, advance, open_case
from qmsflow.engine.definitions import Target
from qmsflow.engine.mywork import View, my_work
from qmsflow.engine.units import UnitKind, create_unit
from tests.conftest import Province, local
from tests.engine.test_scope import counting

CA = {"inspection_decision": "20/QĐ-SKHCN", "minutes_number": "21/BB", "minutes_signed_on": "2025-12-01", "findings": "Thiếu hồ sơ"}


def _world(db: Database, rt: Runtime, province: Province) -> dict[str, int]:
    """THPT-TNH: a lifecycle in building and a corrective action; SGDDT: a planned lifecycle."""
    lead = province.actors["lead"]
    with db.write() as session:
        tnh = session.merge(province.units["THPT-TNH"])
        life = open_case(session, rt, lead, tnh, "qms_lifecycle")
        advance(session, rt, province.actors["tnh"], life.id, "approve_plan", {"plan_number": "1/KH", "plan_approved_on": "2026-01-05"})
        ca = open_case(session, rt, lead, tnh, "corrective_action", CA)
        dept = open_case(session, rt, lead, session.merge(province.units["SGDDT"]), "qms_lifecycle")
        return {"life": life.id, "ca": ca.id, "dept": dept.id}


def test_a_unit_officer_sees_their_units_work_least_time_left_first_with_the_buttons_they_may_press(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    ids = _world(db, rt, province)
    with db.read() as session:
        work = my_work(session, rt, province.actors["tnh"])
    assert work.view is View.UNIT and not work.has_next
    assert [(r.case_id, r.deadline_label) for r in work.items] == [
        (ids["ca"], "Hạn báo cáo kết quả khắc phục (2 tháng kể từ ngày ký biên bản)"),  # due 01/02/2026
        (ids["life"], "Hạn hoàn thành xây dựng HTQLCL"),  # due in July
    ]
    ca, life = work.items
    assert ca.due_date == date(2026, 2, 2) and ca.working_days_left > 0 and not ca.late
    assert ca.quick_events == ()  # submitting the report has fields: a form on the case page
    (start,) = life.quick_events  # the one event with no fields; its guard fails, so it is shown disabled
    assert start.event == "start_applying" and not start.enabled
    assert start.reason == "Cần có quyết định thành lập Ban chỉ đạo ISO và quy trình đã ban hành"
    clock.set(local(date(2026, 2, 9)))
    with db.read() as session:
        ca = my_work(session, rt, province.actors["tnh"], language="en").items[0]
    assert ca.late and ca.working_days_left == -5 and ca.state_label == "Correcting"


def test_a_supervisor_sees_late_and_escalated_first_and_gets_no_buttons(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    from qmsflow.engine.sweep import sweep

    ids = _world(db, rt, province)
    sweep(db, rt, local(date(2026, 2, 24)))  # the corrective report is 15 working days late: the ladder has reached the lead
    clock.set(local(date(2026, 2, 24)))
    with db.read() as session:
        work = my_work(session, rt, province.actors["gddt"])
    assert work.view is View.SUPERVISION
    first = work.items[0]
    assert (first.case_id, first.late, first.escalated_to) == (ids["ca"], True, Target.LEAD)
    assert {r.case_id for r in work.items} == set(ids.values())  # the department's own case and the school's
    assert all(r.quick_events == () for r in work.items)


def test_the_lead_sees_its_own_reviews_first_then_only_what_is_late_or_escalated(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    ids = _world(db, rt, province)
    with db.write() as session:
        advance(session, rt, province.actors["tnh"], ids["ca"], "submit_report",
                {"report_number": "3/BC", "reported_on": "2026-01-05", "actions_taken": "Đã bổ sung hồ sơ"})
    with db.read() as session:
        work = my_work(session, rt, province.actors["lead"])
    assert work.view is View.LEAD
    assert [(r.case_id, r.own_review, r.deadline_label) for r in work.items] == [
        (ids["ca"], True, "Hạn xem xét báo cáo khắc phục")
    ]
    clock.set(local(date(2026, 3, 2)))  # the department's plan deadline has passed; the review is late too
    with db.read() as session:
        rows = my_work(session, rt, province.actors["lead"]).items
        province_watch = my_work(session, rt, province.actors["viewer"])
    assert [(r.case_id, r.own_review, r.late) for r in rows][:1] == [(ids["ca"], True, True)]
    assert {r.case_id for r in rows} == {ids["ca"], ids["dept"]}  # the school's lifecycle is on time: not listed
    assert province_watch.view is View.PROVINCE and {r.case_id for r in province_watch.items} == {ids["ca"], ids["dept"]}


def test_pages_follow_on_and_a_bad_page_is_refused(db: Database, rt: Runtime, province: Province) -> None:
    _world(db, rt, province)
    with db.read() as session:
        one = my_work(session, rt, province.actors["gddt"], page_size=2)
        two = my_work(session, rt, province.actors["gddt"], page=2, page_size=2)
        assert one.has_next and not two.has_next
        assert len(one.items) == 2 and len(two.items) == 1
        assert {r.case_id for r in one.items} & {r.case_id for r in two.items} == set()
        for bad in (0, -1, "2", True, 10_001):
            with pytest.raises(ValidationFailed):
                my_work(session, rt, province.actors["gddt"], page=bad)
        with pytest.raises(ValidationFailed):
            my_work(session, rt, province.actors["gddt"], page_size=0)


def _schools(db: Database, rt: Runtime, province: Province, start: int, stop: int) -> None:
    with db.write() as session:
        parent = session.merge(province.units["SGDDT"])
        for n in range(start, stop):
            unit = create_unit(session, code=f"THPT-{n:03d}", name=f"Trường THPT số {n}", kind=UnitKind.HIGH_SCHOOL.value,
                               valid_from=date(2025, 7, 1), parent=parent, rt=rt, actor=SYSTEM)
            open_case(session, rt, province.actors["lead"], unit, "qms_lifecycle")


def test_a_page_is_one_statement_at_10_and_at_100_units(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    counts: dict[int, dict[str, int]] = {}
    for start, stop in ((0, 10), (10, 100)):
        _schools(db, rt, province, start, stop)
        clock.set(local(date(2026, 3, 2)))  # every plan deadline has passed: the lead's list is full too
        counts[stop] = {}
        for who in ("tnh", "gddt", "lead", "viewer"):
            with db.read() as session, counting(db) as statements:
                work = my_work(session, rt, province.actors[who], page=1, page_size=20)
            counts[stop][who] = len(statements)
            if who in ("gddt", "lead"):
                assert len(work.items) == 10 if stop == 10 else len(work.items) == 20, who
        clock.set(local(date(2026, 1, 5)))
    assert counts[10] == counts[100] == {"tnh": 1, "gddt": 1, "lead": 1, "viewer": 1}
