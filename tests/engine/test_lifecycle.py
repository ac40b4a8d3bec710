"""A QMS case walks its whole legal lifecycle; what is stored replays to what is in memory."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from qmsflow.engine import Database, FixedClock, Runtime, advance, open_case
from qmsflow.engine.cases import open_obligations, pending_timers
from qmsflow.engine.history import verify_case
from qmsflow.engine.models import Case, HistoryEntry, Obligation, Timer
from tests.conftest import HISTORY_KEY, Province, got, local

LIFECYCLE = [
    # (day, actor, event, data, expected state)
    (date(2026, 1, 6), "tnh", "approve_plan", {"plan_number": "12/KH", "plan_approved_on": "2026-01-06"}, "building"),
    (date(2026, 1, 20), "tnh", "establish_committee", {"committee_decision_number": "30/QĐ", "committee_decided_on": "2026-01-20"}, "building"),
    (date(2026, 2, 2), "tnh", "issue_documents", {"documents_decision_number": "31/QĐ", "documents_issued_on": "2026-02-02", "procedure_count": "14"}, "building"),
    (date(2026, 2, 3), "tnh", "start_applying", {}, "applying"),
    (date(2026, 5, 4), "tnh", "record_internal_audit", {"internal_audit_on": "2026-05-04", "internal_audit_report": "2/BC", "nonconformities_open": 0}, "applying"),
    (date(2026, 5, 11), "tnh", "record_management_review", {"management_review_on": "2026-05-11", "management_review_minutes": "3/BB"}, "applying"),
    (date(2026, 5, 12), "tnh", "confirm_effective", {"effective_confirmed_on": "2026-05-12"}, "applying"),
    (date(2026, 5, 13), "tnh", "announce", {"announcement_number": "5/QĐ", "announced_on": "2026-05-13"}, "announced"),
    (date(2026, 5, 18), "tnh", "notify_lead", {"notice_number": "6/TB", "notice_sent_on": "2026-05-18", "posted_on_website": "true"}, "maintaining"),
    (date(2026, 7, 1), "lead", "register_legal_change", {"legal_document": "NĐ 118/2025", "legal_change_effective_on": "2026-07-01"}, "maintaining"),
    (date(2026, 8, 3), "tnh", "record_legal_update", {"procedures_updated_on": "2026-08-03"}, "maintaining"),
    (date(2026, 9, 7), "tnh", "change_scope", {"scope_change": "Thêm 3 thủ tục hành chính", "scope_changed_on": "2026-09-07"}, "reannouncing"),
    (date(2026, 10, 5), "tnh", "record_internal_audit", {"internal_audit_on": "2026-10-05", "internal_audit_report": "9/BC", "nonconformities_open": 0}, "reannouncing"),
    (date(2026, 10, 6), "tnh", "confirm_effective", {"effective_confirmed_on": "2026-10-06"}, "reannouncing"),
    (date(2026, 10, 7), "tnh", "announce", {"announcement_number": "40/QĐ", "announced_on": "2026-10-07"}, "announced"),
]


def _snapshot(session, case: Case) -> tuple:
    timers = [(t.name, t.state, t.due_date, t.next_step, t.next_at) for t in pending_timers(session, case)]
    return (case.state, case.version, dict(case.data), case.history_head, case.history_length, timers)


def assert_reloads_the_same(db: Database, rt: Runtime, case: Case, in_memory: tuple) -> None:
    """Save-and-restore: a case read back in a new session equals the one in memory, and can go on."""
    with db.read() as session:
        reloaded = session.get(Case, case.id)
        assert _snapshot(session, reloaded) == in_memory
        definition = rt.registry.get(reloaded.workflow, reloaded.workflow_version)
        assert definition.events_from(reloaded.state) == definition.events_from(in_memory[0])


def _state_timers_match(session, case: Case) -> bool:
    return all(t.state == case.state for t in pending_timers(session, case) if t.kind == "state")


def test_a_case_walks_the_whole_lifecycle_and_replays(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> None:
    with db.write() as session:
        case = open_case(session, rt, province.actors["lead"], province.units["THPT-TNH"], "qms_lifecycle")
        case_id = case.id
        assert case.state == "planned" and case.version == 1
        assert [t.name for t in pending_timers(session, case)] == ["plan_due"]

    for day, user, event, data, expected in LIFECYCLE:
        clock.set(local(day))
        with db.write() as session:
            before = session.get(Case, case_id)
            version = before.version
            result = advance(session, rt, province.actors[user], case_id, event, data, expected_version=version)
            assert result.to_state == expected
            assert result.case.version == version + 1
            assert _state_timers_match(session, result.case)
            in_memory = _snapshot(session, result.case)
        if event == "notify_lead":
            # save and reload in the middle: a case read back behaves like the one in memory
            assert_reloads_the_same(db, rt, result.case, in_memory)
            with db.read() as session:
                reloaded = session.get(Case, case_id)
                assert reloaded.data["procedure_count"] == 14
                assert reloaded.data["posted_on_website"] is True

    with db.read() as session:
        case = got(session, Case, case_id)
        assert case.state == "announced"
        assert case.version == 1 + len(LIFECYCLE)
        rows = list(session.scalars(select(HistoryEntry).where(HistoryEntry.case_id == case_id).order_by(HistoryEntry.seq)))
        assert verify_case(HISTORY_KEY, case, rows) == []
        moves = [r for r in rows if r.kind in ("opened", "transition")]
        # history replays to the current state, and to the current data
        state, data = None, {}
        for r in moves:
            assert r.from_state == state or r.kind == "opened"
            state = r.to_state
            if r.kind == "transition":
                data.update(r.data)
        assert state == case.state
        assert data == case.data
        assert [r.event for r in moves[1:]] == [step[2] for step in LIFECYCLE]
        # the legal update obligation was opened by the event and fulfilled by the update
        obligations = {(o.name, o.status) for o in session.scalars(select(Obligation).where(Obligation.case_id == case_id))}
        assert ("legal_update", "fulfilled") in obligations
        # the yearly audit recurred from the audit date recorded while re-announcing
        audit = [o for o in open_obligations(session, case) if o.name == "yearly_internal_audit"]
        assert len(audit) == 1 and audit[0].cycle == 2
        audit_timer = session.scalar(select(Timer).where(Timer.obligation_id == audit[0].id))
        assert audit_timer.start_date == date(2026, 10, 5)
        assert audit_timer.due_date == date(2027, 10, 5)
        assert _state_timers_match(session, case)


def test_corrective_action_branches_on_the_review_and_counts_two_months_from_the_minutes(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    clock.set(local(date(2026, 11, 2)))
    minutes = {"inspection_decision": "88/QĐ", "minutes_number": "14/BB", "minutes_signed_on": "2026-10-31", "findings": "Chưa đánh giá nội bộ"}
    with db.write() as session:
        case = open_case(session, rt, province.actors["lead"], province.units["THPT-TNH"], "corrective_action", minutes)
        case_id = case.id
        (timer,) = pending_timers(session, case)
        # 31 Oct + 2 months = 31 Dec 2026 (Thursday, a working day)
        assert timer.start_date == date(2026, 10, 31) and timer.due_date == date(2026, 12, 31)

    report = {"report_number": "1/BC", "reported_on": "2026-11-20", "actions_taken": "Đã đánh giá nội bộ"}
    clock.set(local(date(2026, 11, 20)))
    with db.write() as session:
        result = advance(session, rt, province.actors["tnh"], case_id, "submit_report", report)
        assert result.to_state == "reported"
        in_memory = _snapshot(session, result.case)
    assert_reloads_the_same(db, rt, result.case, in_memory)
    clock.set(local(date(2026, 11, 25)))
    with db.write() as session:
        result = advance(session, rt, province.actors["lead"], case_id, "review",
                         {"decision": "not_accepted", "reviewed_on": "2026-11-25", "reply_number": "200/SKHCN"})
        assert result.to_state == "reopened"
        assert [t.name for t in pending_timers(session, result.case)] == ["resubmit_due"]
    with db.write() as session:
        advance(session, rt, province.actors["tnh"], case_id, "submit_report", report | {"report_number": "2/BC"})
    clock.advance(timedelta(days=1))
    with db.write() as session:
        result = advance(session, rt, province.actors["lead"], case_id, "review",
                         {"decision": "accepted", "reviewed_on": "2026-11-26", "reply_number": "201/SKHCN"})
        assert result.to_state == "accepted"
        assert result.case.closed_at == clock.now()
        assert pending_timers(session, result.case) == []


def test_an_end_state_cancels_every_timer_and_obligation(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> None:
    with db.write() as session:
        case = open_case(session, rt, province.actors["lead"], province.units["SNV"], "qms_lifecycle")
        case_id = case.id
    for day, user, event, data, _ in LIFECYCLE[:9]:
        clock.set(local(day))
        with db.write() as session:
            advance(session, rt, province.actors["snv" if user == "tnh" else user], case_id, event, data)
    with db.write() as session:
        assert len(open_obligations(session, got(session, Case, case_id))) == 2
        advance(session, rt, province.actors["lead"], case_id, "supersede", {"successor_unit": "SNV2", "reorganised_on": "2026-05-18"})
    with db.read() as session:
        case = got(session, Case, case_id)
        assert case.state == "superseded"
        assert pending_timers(session, case) == []
        assert open_obligations(session, case) == []
        assert session.scalar(select(func.count()).select_from(Obligation).where(Obligation.status == "cancelled")) == 2


@pytest.mark.parametrize("missing", ["plan_number", "plan_approved_on"])
def test_an_event_missing_required_data_is_refused_naming_the_field(db: Database, rt: Runtime, province: Province, missing: str) -> None:
    from qmsflow.engine import GuardFailed

    data = {"plan_number": "1/KH", "plan_approved_on": "2026-01-05"}
    del data[missing]
    with db.write() as session:
        case_id = open_case(session, rt, province.actors["lead"], province.units["SNV"], "qms_lifecycle").id
    with pytest.raises(GuardFailed) as info, db.write() as session:
        advance(session, rt, province.actors["snv"], case_id, "approve_plan", data)
    assert [p.field for p in info.value.problems] == [missing]


def test_leaving_a_state_cancels_its_timers_in_one_statement_and_the_loaded_ones_follow(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    clock.set(local(date(2026, 1, 6)))
    with db.write() as session:
        case = open_case(session, rt, province.actors["lead"], province.units["THPT-TNH"], "qms_lifecycle")
        (loaded,) = pending_timers(session, case)  # held by the session, as the sweep holds the timer it fires
        day, actor, event, data, state = LIFECYCLE[0]
        advance(session, rt, province.actors[actor], case.id, event, data)
        assert (loaded.status, loaded.next_at, loaded.closed_at) == ("cancelled", None, local(day))
        assert not session.dirty  # kept in step, not left for a flush
    with db.read() as session:
        stored = session.get(Timer, loaded.id)
        assert (stored.status, stored.next_at) == ("cancelled", None)
        assert [t.state for t in pending_timers(session, got(session, Case, case.id))] == [state]
