"""The services pages and the API read a case through: allowed events, timeline, deadlines, inbox, admin."""

from __future__ import annotations

from datetime import date

import pytest

from qmsflow.engine import (
    SYSTEM,
    Actor,
    Database,
    FixedClock,
    GuardFailed,
    NotFound,
    NotPermitted,
    Role,
    Runtime,
    ValidationFailed,
    advance,
    history,
    open_case,
)
from qmsflow.engine.actions import allowed_events
from qmsflow.engine.deadlines import case_deadlines, upcoming_deadlines, working_days_left
from qmsflow.engine.inbox import inbox_page, mark_all_read, mark_read
from qmsflow.engine.models import Case, InboxItem, Notification
from qmsflow.engine.permissions import AdminArea, may_administer, require_admin
from qmsflow.engine.timeline import case_timeline
from qmsflow.engine.units import set_parent
from qmsflow.engine.users import create_user, user_by_name
from tests.conftest import Province, got, local


def _building_case(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> tuple[int, Actor]:
    with db.write() as session:
        officer = Actor.of(create_user(session, username="tnh.mai", role="unit_officer", full_name="Huỳnh Thị Mai",
                                       unit=session.merge(province.units["THPT-TNH"]), now=clock.now(), rt=rt, actor=SYSTEM))
        case = open_case(session, rt, province.actors["lead"], session.merge(province.units["THPT-TNH"]), "qms_lifecycle")
        advance(session, rt, officer, case.id, "approve_plan", {"plan_number": "12/KH", "plan_approved_on": "2026-01-05"})
        return case.id, officer


def test_allowed_events_say_which_buttons_are_disabled_and_why(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    case_id, officer = _building_case(db, rt, clock, province)
    with db.read() as session:
        case = session.get(Case, case_id)
        mine = {a.event: a for a in allowed_events(session, rt, officer, case)}
        assert list(mine) == ["establish_committee", "issue_documents", "start_applying"]
        assert mine["establish_committee"].enabled and mine["establish_committee"].fields == ("committee_decision_number", "committee_decided_on")
        assert mine["start_applying"].guard_holds is False and not mine["start_applying"].enabled
        assert mine["start_applying"].reason == "Cần có quyết định thành lập Ban chỉ đạo ISO và quy trình đã ban hành"
        english = {a.event: a for a in allowed_events(session, rt, officer, case, language="en")}
        assert english["start_applying"].reason == "The steering committee decision and issued procedures are required"
        assert [a.event for a in allowed_events(session, rt, province.actors["lead"], case)] == ["supersede", "withdraw"]
        assert allowed_events(session, rt, province.actors["viewer"], case) == []
        assert allowed_events(session, rt, province.actors["gddt"], case) == []  # the supervisor watches
        with pytest.raises(NotFound):
            allowed_events(session, rt, province.actors["mythoi"], case)
    with db.write() as session, pytest.raises(GuardFailed) as refused:
        advance(session, rt, officer, case_id, "start_applying", {})
    # the same words advance refuses with, in the reader's language
    assert mine["start_applying"].reason in refused.value.problems[0].render(rt.language)
    assert english["start_applying"].reason in str(refused.value)
    with db.write() as session:
        advance(session, rt, officer, case_id, "establish_committee", {"committee_decision_number": "30/QĐ", "committee_decided_on": "2026-01-05"})
        advance(session, rt, officer, case_id, "issue_documents",
                {"documents_decision_number": "31/QĐ", "documents_issued_on": "2026-01-05", "procedure_count": 14})
        now = {a.event: a for a in allowed_events(session, rt, officer, got(session, Case, case_id))}
        assert now["start_applying"].guard_holds is True and now["start_applying"].reason is None


def test_the_timeline_names_people_labels_fields_and_evidence(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    case_id, officer = _building_case(db, rt, clock, province)
    evidence = [{"attachment_id": 7, "sha256": "ab" * 32, "name": "KH-12.pdf", "type": "application/pdf", "size": 18230}]
    with db.write() as session:
        case = session.get(Case, case_id)
        history.append(session, rt.history_key, case, at=clock.now(), kind="evidence", actor=officer.username,
                       data={"_evidence": evidence, "note": "bản ký"})
    with db.read() as session:
        opened, approved, attached = case_timeline(session, rt, officer, case_id)
        assert (opened.kind, opened.to_label) == ("opened", "Trong kế hoạch")
        assert approved.actor_name == "Huỳnh Thị Mai" and approved.event_label == "Phê duyệt kế hoạch xây dựng HTQLCL"
        assert (approved.from_label, approved.to_label) == ("Trong kế hoạch", "Xây dựng")
        assert [(f.name, f.label, f.value) for f in approved.fields] == [
            ("plan_number", "Số kế hoạch", "12/KH"), ("plan_approved_on", "Ngày phê duyệt", "2026-01-05")]
        assert [(e.attachment_id, e.name, e.size) for e in attached.evidence] == [(7, "KH-12.pdf", 18230)]
        assert attached.details == {"note": "bản ký"}
        english = case_timeline(session, rt, officer, case_id, language="en")[1]
        assert english.fields[0].label == "Plan number" and english.to_label == "Building"
        with pytest.raises(NotFound):
            case_timeline(session, rt, province.actors["thcs"], case_id)
        assert history.verify_all(session, rt.history_key)[2] == []


def test_working_days_left_count_on_the_calendar(rt: Runtime) -> None:
    cal = rt.calendar
    assert working_days_left(cal, date(2026, 1, 9), date(2026, 1, 9)) == 0  # due today
    assert working_days_left(cal, date(2026, 1, 9), date(2026, 1, 12)) == 1  # Friday to Monday
    assert working_days_left(cal, date(2026, 1, 12), date(2026, 1, 9)) == -1
    assert working_days_left(cal, date(2026, 2, 13), date(2026, 2, 23)) == 1  # over Tết 2026


def test_deadlines_of_a_case_and_of_a_scope(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> None:
    case_id, officer = _building_case(db, rt, clock, province)
    with db.read() as session:
        (build,) = case_deadlines(session, rt, officer, got(session, Case, case_id))
        assert (build.name, build.label, build.due_date, build.late) == (
            "build_due", "Hạn hoàn thành xây dựng HTQLCL", date(2026, 7, 6), False)
        assert build.working_days_left == working_days_left(rt.calendar, date(2026, 1, 5), date(2026, 7, 6))
        assert [d.case_id for d in upcoming_deadlines(session, rt, officer)] == [case_id]
        assert upcoming_deadlines(session, rt, province.actors["thcs"]) == []
        for bad in ({"limit": 0}, {"limit": 5000}, {"due_before": local(date(2026, 1, 5)).replace(tzinfo=None)}):
            with pytest.raises(ValidationFailed):
                upcoming_deadlines(session, rt, officer, **bad)


def test_the_inbox_lists_counts_and_marks_read_within_scope(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    mythoi, thcs = province.actors["mythoi"], province.actors["thcs"]
    with db.write() as session:
        case = open_case(session, rt, province.actors["lead"], session.merge(province.units["THCS-MT"]), "qms_lifecycle")
        items = {}
        for n, actor in enumerate([mythoi, mythoi, thcs]):
            note = Notification(case_id=case.id, kind="escalation", level=2, target="supervisor", target_unit_id=case.unit_id,
                                subject=f"Quá hạn {n}", body="...", created_at=clock.now(), status="routed")
            session.add(note)
            session.flush()
            item = InboxItem(notification_id=note.id, user_id=user_by_name(session, actor.username).id, created_at=clock.now())
            session.add(item)
            session.flush()
            items[n] = item.id
    with db.write() as session:
        page = inbox_page(session, rt, mythoi, page_size=1)
        assert page.unread == 2 and [i.subject for i in page.items] == ["Quá hạn 1"] and page.next_cursor
        rest = inbox_page(session, rt, mythoi, cursor=page.next_cursor, page_size=1)
        assert [i.subject for i in rest.items] == ["Quá hạn 0"] and rest.next_cursor is None
        with pytest.raises(NotFound):  # another person's item: nothing is marked
            mark_read(session, rt, mythoi, [items[0], items[2]])
        assert inbox_page(session, rt, mythoi).unread == 2
        with pytest.raises(ValidationFailed):
            mark_read(session, rt, mythoi, [])
        assert mark_read(session, rt, mythoi, [items[0]]) == 1
        assert mark_read(session, rt, mythoi, [items[0]]) == 0
        assert [i.subject for i in inbox_page(session, rt, mythoi, unread_only=True).items] == ["Quá hạn 1"]
        assert mark_all_read(session, rt, mythoi) == 1
        assert inbox_page(session, rt, mythoi).unread == 0
        assert inbox_page(session, rt, thcs).unread == 1
        set_parent(session, session.merge(province.units["THCS-MT"]), session.merge(province.units["SGDDT"]), date(2026, 3, 1), rt=rt, actor=SYSTEM)
    clock.set(local(date(2026, 3, 2)))
    with db.read() as session:  # the school moved: its supervisor of before no longer sees its notifications
        assert inbox_page(session, rt, mythoi).items == []


@pytest.mark.parametrize("role", list(Role))
def test_administration_is_decided_by_the_permission_function(role: Role) -> None:
    actor = Actor("someone", role)
    admin_only = {AdminArea.USERS, AdminArea.TOKENS, AdminArea.WEBHOOKS, AdminArea.CALENDAR}
    for area in AdminArea:
        expected = role is Role.ADMIN or (role is Role.LEAD and area not in admin_only)
        assert may_administer(actor, area) is expected, area
        if expected:
            require_admin(actor, area.value)
        else:
            with pytest.raises(NotPermitted):
                require_admin(actor, area)
    with pytest.raises(ValidationFailed):
        may_administer(actor, "the moon")
