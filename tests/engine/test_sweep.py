"""The sweep fires each due step once, in due order, on the working calendar, and survives a broken case."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from qmsflow.engine import SYSTEM, Database, FixedClock, Runtime, open_case
from qmsflow.engine import sweep as sweep_module
from qmsflow.engine.history import verify_all
from qmsflow.engine.models import Case, HistoryEntry, InboxItem, Notification, Timer, TimerFiring, User
from qmsflow.engine.notifications import MailSettings, route
from qmsflow.engine.sweep import sweep
from qmsflow.engine.units import Hierarchy, UnitKind, create_unit
from tests.conftest import HISTORY_KEY, Province, allow_another_open_case, got, local

MINUTES = {"inspection_decision": "88/QĐ", "minutes_number": "14/BB", "findings": "Chưa cập nhật quy trình"}


def _corrective(db: Database, rt: Runtime, province: Province, unit: str, signed_on: str) -> int:
    with db.write() as session:
        return open_case(
            session, rt, province.actors["lead"], province.units[unit], "corrective_action", MINUTES | {"minutes_signed_on": signed_on}
        ).id


def _fired(db: Database) -> list[tuple[int, int, str, int, str]]:
    with db.read() as session:
        rows = session.execute(
            select(TimerFiring.timer_id, TimerFiring.step, TimerFiring.kind, TimerFiring.level, TimerFiring.outcome).order_by(TimerFiring.id)
        )
        return [tuple(r) for r in rows]


def test_a_deadline_in_tet_fires_on_the_first_working_day_after_it_once_then_its_ladder(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    clock.set(local(date(2025, 12, 18)))
    case_id = _corrective(db, rt, province, "THPT-TNH", "2025-12-17")
    with db.read() as session:
        (timer,) = session.scalars(select(Timer).where(Timer.case_id == case_id))
        # 17 Dec 2025 + 2 months = Tue 17 Feb 2026, inside Tết (16-20 Feb): the period ends Mon 23 Feb
        assert timer.due_date == date(2026, 2, 23)
        assert timer.due_at == datetime(2026, 2, 23, 17, 0, tzinfo=UTC)

    assert sweep(db, rt, local(date(2026, 2, 23), 23, 59)).count == 0  # the last day is still open
    first = sweep(db, rt, local(date(2026, 2, 24), 0, 1))
    assert [(f.kind, f.level, f.outcome) for f in first.fired] == [("due", 0, "fired"), ("escalation", 1, "fired")]
    assert sweep(db, rt, local(date(2026, 2, 24), 0, 2)).count == 0  # once
    # level 2 is 5 working days after the due date: Mon 2 Mar, passing at 00:00 on 3 Mar
    assert sweep(db, rt, local(date(2026, 3, 2), 23, 0)).count == 0
    second = sweep(db, rt, local(date(2026, 3, 3), 0, 5))
    assert [(f.kind, f.level, f.detail) for f in second.fired] == [("escalation", 2, "supervisor SGDDT")]
    with db.read() as session:
        case = session.get(Case, case_id)
        assert case.data["overdue"] is True  # the due action fired mark_overdue as the system
        escalated = session.scalars(
            select(HistoryEntry).where(HistoryEntry.case_id == case_id, HistoryEntry.kind == "escalated").order_by(HistoryEntry.seq)
        ).all()
        # each escalation is written with its original due time and the time it actually fired
        assert [(h.data["level"], h.data["scheduled_at"], h.at) for h in escalated] == [
            (1, "2026-02-23T17:00:00.000000Z", local(date(2026, 2, 24), 0, 1)),
            (2, "2026-03-02T17:00:00.000000Z", local(date(2026, 3, 3), 0, 5)),
        ]


def test_after_a_week_of_downtime_each_missed_level_fires_once_in_due_order_and_passed_reminders_are_skipped(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    clock.set(local(date(2026, 1, 5)))
    ids = [_corrective(db, rt, province, unit, signed) for unit, signed in
           [("THPT-TNH", "2025-11-10"), ("THCS-MT", "2025-11-12"), ("SNV", "2025-11-14")]]
    # the scheduler was down from 5 Jan to the morning of 20 Jan: due dates 12, 13, 14 Jan passed in between
    report = sweep(db, rt, local(date(2026, 1, 20), 8, 0))
    assert {f.case_id for f in report.fired} == set(ids)
    scheduled = [f.scheduled_at for f in report.fired]
    per_case = {cid: [f for f in report.fired if f.case_id == cid] for cid in ids}
    for steps in per_case.values():
        assert [f.scheduled_at for f in steps] == sorted(f.scheduled_at for f in steps), "due order within a case"
        assert [(f.kind, f.outcome) for f in steps][:2] == [("reminder", "skipped"), ("reminder", "skipped")]
        assert ("due", "fired") in [(f.kind, f.outcome) for f in steps]
        assert all(f.scheduled_at <= local(date(2026, 1, 20), 8, 0) for f in steps)
    assert min(scheduled) < max(scheduled)
    assert sweep(db, rt, local(date(2026, 1, 20), 8, 1)).fired == []  # nothing fires twice
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(HistoryEntry).where(HistoryEntry.kind == "reminder_skipped")) == 6
        assert verify_all(session, HISTORY_KEY)[2] == []


def test_a_reminder_is_sent_on_its_day_counted_in_working_days_across_tet(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    clock.set(local(date(2026, 1, 5)))
    _corrective(db, rt, province, "THPT-TNH", "2026-01-05")  # due Thu 5 Mar 2026
    # 10 working days before 5 Mar, skipping Tết (16-20 Feb), is Thu 12 Feb
    assert sweep(db, rt, local(date(2026, 2, 11), 23, 0)).fired == []
    report = sweep(db, rt, local(date(2026, 2, 12), 7, 0))
    assert [(f.kind, f.outcome, f.scheduled_at) for f in report.fired] == [("reminder", "fired", local(date(2026, 2, 12), 0, 0))]
    # 3 working days before is Mon 2 Mar
    report = sweep(db, rt, local(date(2026, 3, 2), 7, 30))
    assert [(f.kind, f.outcome) for f in report.fired] == [("reminder", "fired")]
    with db.read() as session:
        assert session.scalar(select(Timer.next_step)) == 2
        assert session.scalar(select(func.count()).select_from(HistoryEntry).where(HistoryEntry.kind == "reminder")) == 2


def test_a_level_whose_body_is_the_same_as_the_previous_is_skipped(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    with db.write() as session:
        branch = create_unit(session, code="CCTDC", name="Chi cục Tiêu chuẩn Đo lường Chất lượng", kind=UnitKind.BRANCH.value,
                             valid_from=date(2025, 7, 1), parent=session.merge(province.units["SKHCN"]), rt=rt, actor=SYSTEM)
        case_id = open_case(session, rt, province.actors["lead"], branch, "qms_lifecycle").id
    report = sweep(db, rt, local(date(2026, 6, 1)))
    ladder = [(f.level, f.outcome, f.detail) for f in report.fired if f.kind == "escalation"]
    # the branch's supervisor is the Dept of S&T, which is also the lead unit: level 3 is not sent twice
    assert ladder == [(1, "fired", "unit_head CCTDC"), (2, "fired", "supervisor SKHCN"), (3, "skipped", "same_body"),
                      (4, "fired", "provincial_pc 91")]
    with db.read() as session:
        skipped = session.scalar(select(HistoryEntry).where(HistoryEntry.case_id == case_id, HistoryEntry.kind == "escalation_skipped"))
        assert skipped.data["reason"] == "same_body"


def test_one_broken_case_is_logged_and_skipped_and_never_stops_the_sweep(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    good = _corrective(db, rt, province, "THPT-TNH", "2025-10-01")
    bad = _corrective(db, rt, province, "THCS-MT", "2025-10-01")
    real = Hierarchy.body
    bad_unit = province.units["THCS-MT"].id

    def broken(self, unit_id, target):
        if unit_id == bad_unit:
            raise RuntimeError("corrupt hierarchy")
        return real(self, unit_id, target)

    monkeypatch.setattr(Hierarchy, "body", broken)
    report = sweep(db, rt, local(date(2026, 1, 20)))
    assert report.failed_cases == [bad]
    assert {f.case_id for f in report.fired} == {good}
    assert f"case {bad} failed and was skipped" in caplog.text
    with db.read() as session:
        # the broken case's work was rolled back whole, to be retried
        assert session.scalar(select(func.count()).select_from(HistoryEntry).where(HistoryEntry.case_id == bad)) == 1
    monkeypatch.setattr(Hierarchy, "body", real)
    retried = sweep(db, rt, local(date(2026, 1, 20)))
    assert {f.case_id for f in retried.fired} == {bad} and retried.failed_cases == []


def test_a_dry_run_fires_nothing(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> None:
    _corrective(db, rt, province, "THPT-TNH", "2025-10-01")
    preview = sweep(db, rt, local(date(2026, 1, 20)), dry_run=True)
    assert preview.count > 0
    assert _fired(db) == []
    assert sweep(db, rt, local(date(2026, 1, 20))).count == preview.count


def test_concurrent_sweeps_fire_every_step_exactly_once(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> None:
    clock.set(local(date(2025, 9, 1)))
    with db.write() as session:
        units = [session.merge(province.units[u]) for u in ("THPT-TNH", "THCS-MT", "SNV")]
        for i in range(90):
            allow_another_open_case(session, units[i % 3])
            open_case(session, rt, province.actors["lead"], units[i % 3], "qms_lifecycle")
    now = local(date(2026, 3, 1))
    reports = []
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            reports.append(sweep(db, rt, now, batch_size=7, worker=name))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    fired = _fired(db)
    assert len(fired) == len({(timer, step) for timer, step, *_ in fired})
    # every timer: 2 reminders (skipped), due, 4 levels; each step exactly once
    assert len(fired) == 90 * 7
    assert sum(len(r.fired) for r in reports) == 90 * 7
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Timer).where(Timer.status == "pending", Timer.next_at <= now)) == 0


def test_escalations_reach_the_inbox_of_whoever_holds_the_role_when_routed(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    _corrective(db, rt, province, "THPT-TNH", "2025-10-01")
    sweep(db, rt, local(date(2026, 1, 20)))
    assert route(db, local(date(2026, 1, 20)), MailSettings(enabled=False)) == 4  # 4 escalation levels
    with db.read() as session:
        got = dict(session.execute(
            select(User.username, func.count()).join(InboxItem, InboxItem.user_id == User.id).group_by(User.username)
        ).all())
    assert got == {"tnh": 1, "gddt": 1, "lead": 1, "viewer": 1}


def test_a_dry_run_previews_every_batch(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> None:
    for unit in ("THPT-TNH", "THCS-MT", "SNV"):
        _corrective(db, rt, province, unit, "2025-10-01")
    preview = sweep(db, rt, local(date(2026, 1, 20)), batch_size=1, dry_run=True)
    assert {f.case_id for f in preview.fired} == {1, 2, 3} and preview.batches == 3
    assert _fired(db) == []


def test_when_a_batched_write_fails_the_batch_is_redone_case_by_case_and_only_the_bad_case_waits(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: the batched write path must not leave the loaded cases' chain heads ahead of the database.
    clock.set(local(date(2025, 9, 1)))
    with db.write() as session:
        ids = [open_case(session, rt, province.actors["lead"], session.merge(province.units[u]), "qms_lifecycle").id
               for u in ("THPT-TNH", "THCS-MT", "SNV")]
        bad_timer = session.scalars(select(Timer).where(Timer.case_id == ids[1])).one()
        # a firing of the bad case's next step already exists, as if fired by a sweep whose timer update was lost
        session.add(TimerFiring(timer_id=bad_timer.id, step=bad_timer.next_step, kind="reminder", level=0, outcome="fired",
                                scheduled_at=bad_timer.next_at, fired_at=bad_timer.next_at, fired_by="elsewhere"))
    report = sweep(db, rt, local(date(2026, 3, 1)))
    assert report.failed_cases == [ids[1]]
    assert {f.case_id for f in report.fired} == {ids[0], ids[2]}
    assert "firing them one by one" in caplog.text
    with db.read() as session:
        assert verify_all(session, HISTORY_KEY)[2] == []
        fired = session.scalar(select(func.count()).select_from(TimerFiring).where(TimerFiring.fired_by == "sweep"))
        assert fired == len(report.fired) == 2 * 7


def test_a_batch_mixing_due_actions_and_reminders_keeps_every_chain_whole(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    # corrective actions fire a transition when due (their own savepoint); lifecycles only record and notify (batched)
    clock.set(local(date(2025, 10, 2)))
    corrective = [_corrective(db, rt, province, unit, "2025-10-01") for unit in ("THPT-TNH", "SNV")]
    with db.write() as session:
        lifecycle = [open_case(session, rt, province.actors["lead"], session.merge(province.units[u]), "qms_lifecycle").id
                     for u in ("THCS-MT", "SGDDT")]
    report = sweep(db, rt, local(date(2026, 3, 1)))
    assert {f.case_id for f in report.fired} == set(corrective + lifecycle) and report.failed_cases == []
    with db.read() as session:
        assert verify_all(session, HISTORY_KEY)[2] == []
        assert all(got(session, Case, i).data["overdue"] is True for i in corrective)
        notified = session.scalar(select(func.count()).select_from(Notification))
        assert notified == sum(1 for f in report.fired if f.outcome == "fired" and f.kind != "due")
    assert sweep(db, rt, local(date(2026, 3, 1))).fired == []


def test_only_a_case_whose_due_action_is_due_gets_its_own_savepoint(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.set(local(date(2025, 12, 18)))
    case_id = _corrective(db, rt, province, "THPT-TNH", "2025-12-17")  # due 23 Feb 2026, fires mark_overdue
    one_by_one: list[int] = []
    real = sweep_module._Firing.one_case

    def spy(self, session, case, timers):
        one_by_one.append(case.id)
        return real(self, session, case, timers)

    monkeypatch.setattr(sweep_module._Firing, "one_case", spy)
    sweep(db, rt, local(date(2026, 2, 12), 7, 0))  # a reminder only: batched
    assert one_by_one == []
    sweep(db, rt, local(date(2026, 2, 24), 0, 1))  # the due step runs mark_overdue: on its own
    assert one_by_one == [case_id]
    later = sweep(db, rt, local(date(2026, 3, 3), 0, 5))  # level 2 of the same timer: batched again
    assert [(f.kind, f.level) for f in later.fired] == [("escalation", 2)] and one_by_one == [case_id]


def test_timers_whose_stored_instant_passed_before_their_step_do_not_hold_up_a_due_case(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    # Regression (review reproduction b_livelock): 200 timers stored as due, whose next step as the
    # sweep plans it is later (planned on another calendar), were claimed again in every batch and
    # nothing fired; a truly due case with a higher id was never reached.
    unit = province.units["THPT-TNH"]
    clock.set(local(date(2026, 1, 5)))
    with db.write() as session:
        stuck = []
        for _ in range(200):
            allow_another_open_case(session, unit)
            stuck.append(open_case(session, rt, province.actors["lead"], unit, "qms_lifecycle").id)
    clock.set(local(date(2025, 11, 3)))
    with db.write() as session:
        allow_another_open_case(session, unit)
        due = open_case(session, rt, province.actors["lead"], unit, "qms_lifecycle").id  # the highest id
    now = local(date(2026, 2, 3), 8)  # the 200's first reminder is days away (mid-February, before Tết)
    with db.write() as session:
        planned = dict(session.execute(select(Timer.case_id, Timer.next_at).where(Timer.case_id.in_(stuck))).tuples().all())
        session.execute(update(Timer).where(Timer.case_id.in_(stuck)).values(next_at=now - timedelta(hours=1)))
    report = sweep(db, rt, now, batch_size=200, max_batches=20)
    assert report.batches <= 2, f"{report.batches} batches: the sweep kept claiming the same cases"
    assert {f.case_id for f in report.fired} == {due}
    with db.read() as session:
        corrected = dict(session.execute(select(Timer.case_id, Timer.next_at).where(Timer.case_id.in_(stuck))).tuples().all())
        assert corrected == planned  # each moved to its real next step, none fired
        assert session.scalar(select(func.count()).select_from(TimerFiring).where(TimerFiring.timer_id.in_(
            select(Timer.id).where(Timer.case_id.in_(stuck))))) == 0
    assert sweep(db, rt, now).batches == 0  # nothing is due any more: the next sweep ends at once
