"""Every operation is all or nothing: a transition, a case opened, a sweep's case, an email sent.

Regressions of the outside review (Engine hardening 1 of 4): a transition that wrote its rows and
then failed to plan the new state's deadline, which the sweep then committed; objects that outlived
a savepoint rollback; two "now"s in one operation; a silent SMTP server holding SQLite's write lock;
two open lifecycle cases for one unit.
"""

from __future__ import annotations

import pickle
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError

from qmsflow.engine import (
    Conflict,
    Database,
    DefinitionError,
    FixedClock,
    GuardFailed,
    Registry,
    Runtime,
    advance,
    open_case,
    parse_definition,
)
from qmsflow.engine import definitions as definitions_module
from qmsflow.engine import sweep as sweep_module
from qmsflow.engine.clock import local_date
from qmsflow.engine.db import make_engine
from qmsflow.engine.history import verify_all
from qmsflow.engine.models import Case, EmailMessage, HistoryEntry, Timer, TimerFiring
from qmsflow.engine.notifications import MailSettings, SmtpMailer, _claim, send_pending
from qmsflow.engine.sweep import sweep
from qmsflow.workflows import DIRECTORY as WORKFLOWS
from tests.conftest import HISTORY_KEY, Province, assert_loaded_objects_match_their_rows, local, rows_committed, rows_through

# The review's definition: 'reviewing' counts from assigned_on, which only 'assign' (fired inside
# the state) records, so entering it by hand_over cannot plan its deadline.
UNPLANNABLE = """
name: escalate_review
version: 1
label: {vi: x, en: x}
initial: drafting
open_cases: many
states:
  drafting:
    kind: task
    label: {vi: a, en: a}
    timers:
      draft_due: {label: {vi: a, en: a}, length: 5, unit: working_days, on_due: hand_over}
  reviewing:
    kind: task
    label: {vi: b, en: b}
    timers:
      review_due: {label: {vi: b, en: b}, start: {field: assigned_on}, length: 10, unit: working_days}
  done: {kind: end, label: {vi: c, en: c}}
events:
  hand_over: {label: {vi: h, en: h}, roles: [system, lead], from: [drafting], to: reviewing}
  assign:
    label: {vi: s, en: s}
    roles: [lead]
    from: [reviewing]
    fields: {assigned_on: {type: date, required: true, label: {vi: d, en: d}}}
  finish: {label: {vi: f, en: f}, roles: [lead], from: [reviewing], to: done}
"""

HANDOVER = UNPLANNABLE.replace("name: escalate_review", "name: handover").replace(
    "start: {field: assigned_on}, ", ""
)

PLAN = {"plan_number": "12/KH", "plan_approved_on": "2026-01-05"}
MINUTES = {"inspection_decision": "88/QĐ", "minutes_number": "14/BB", "findings": "Chưa cập nhật quy trình"}


def runtime_with(rt: Runtime, *texts: str, monkeypatch: pytest.MonkeyPatch | None = None) -> Runtime:
    """The test runtime with extra definitions; with ``monkeypatch``, as an older loader accepted them."""
    if monkeypatch is not None:
        monkeypatch.setattr(definitions_module, "check_timer_starts", lambda compiler, transitions: None)
    extra = [parse_definition(t, f"{i}.yaml") for i, t in enumerate(texts)]
    if monkeypatch is not None:
        monkeypatch.undo()
    registry = Registry([*Registry.from_directory(WORKFLOWS).definitions(), *extra])
    return Runtime(registry=registry, calendar=rt.calendar, clock=rt.clock, history_key=rt.history_key)


# ------------------------------------------------------------------------------- timer starts


def test_the_loader_refuses_a_timer_that_starts_at_a_date_a_case_may_not_hold_on_entry() -> None:
    with pytest.raises(DefinitionError) as info:
        parse_definition(UNPLANNABLE, "escalate_review.yaml")
    (problem,) = info.value.problems
    assert problem.key == "states.reviewing.timers.review_due.start.field"
    assert "without a date in 'assigned_on'" in problem.message and problem.line == 17


def test_a_start_field_recorded_by_every_way_in_is_accepted_unless_a_later_event_clears_it() -> None:
    given = UNPLANNABLE.replace(
        "hand_over: {label: {vi: h, en: h}, roles: [system, lead], from: [drafting], to: reviewing}",
        "hand_over:\n    label: {vi: h, en: h}\n    roles: [lead]\n    from: [drafting]\n    to: reviewing\n"
        "    fields: {assigned_on: {type: date, required: true, label: {vi: d, en: d}}}",
    ).replace("on_due: hand_over", "escalation: [{after: 0, target: lead}]")
    assert parse_definition(given, "ok.yaml").name == "escalate_review"
    # an optional field may be left out, so it guarantees nothing
    with pytest.raises(DefinitionError):
        parse_definition(given.replace("assigned_on: {type: date, required: true,", "assigned_on: {type: date,", 1), "x.yaml")
    # a way back into the state through an event that clears the date
    cleared = given.replace(
        "  finish:",
        "  send_back: {label: {vi: r, en: r}, roles: [lead], from: [reviewing], to: drafting, set: {assigned_on: null}}\n"
        "  redo: {label: {vi: q, en: q}, roles: [lead], from: [drafting], to: reviewing}\n  finish:",
    )
    with pytest.raises(DefinitionError) as info:
        parse_definition(cleared, "cleared.yaml")
    assert [p.key for p in info.value.problems] == ["states.reviewing.timers.review_due.start.field"]


def test_an_obligation_opened_by_an_event_must_count_from_a_required_date_of_that_event() -> None:
    source = (WORKFLOWS / "qms_lifecycle.v1.yaml").read_text("utf-8")
    optional = source.replace(
        "legal_change_effective_on: {type: date, required: true,", "legal_change_effective_on: {type: date,"
    )
    assert optional != source
    with pytest.raises(DefinitionError) as info:
        parse_definition(optional, "qms.yaml")
    assert [p.key for p in info.value.problems] == ["obligations.legal_update.timer.start.field"]


def test_a_transition_that_cannot_plan_its_deadline_is_refused_naming_its_event_and_leaves_nothing(
    db: Database, rt: Runtime, province: Province, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime_with(rt, UNPLANNABLE, monkeypatch=monkeypatch)  # as a definition an older loader let through
    with db.write() as session:
        case_id = open_case(session, rt, province.actors["lead"], province.units["SNV"], "escalate_review").id
    before = rows_committed(db)
    with db.write() as session:
        case = session.get(Case, case_id)
        assert case is not None
        with pytest.raises(GuardFailed) as info:
            advance(session, rt, province.actors["lead"], case_id, "hand_over", {})
        assert info.value.event == "hand_over" and [p.field for p in info.value.problems] == ["assigned_on"]
        # the caller's own transaction holds nothing of it, and the loaded case shows its row
        assert rows_through(session) == before
        assert (case.state, case.version) == ("drafting", 1)
        assert_loaded_objects_match_their_rows(session)
    # even though this caller committed after catching the error
    assert rows_committed(db) == before


def test_a_due_action_refused_by_the_definition_is_recorded_and_leaves_no_half_transition(
    db: Database, rt: Runtime, province: Province, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime_with(rt, UNPLANNABLE, monkeypatch=monkeypatch)
    with db.write() as session:
        case_id = open_case(session, rt, province.actors["lead"], province.units["THPT-TNH"], "escalate_review").id
    report = sweep(db, rt, local(date(2026, 1, 13), 8))
    assert [(f.kind, f.outcome, f.detail) for f in report.fired] == [("due", "fired", "hand_over refused: GuardFailed")]
    with db.read() as session:
        case = session.get(Case, case_id)
        assert case is not None and (case.state, case.version) == ("drafting", 1)
        kinds = session.scalars(select(HistoryEntry.kind).where(HistoryEntry.case_id == case_id).order_by(HistoryEntry.seq))
        assert list(kinds) == ["opened", "deadline_passed", "timer_action_refused"]
        assert session.scalar(select(func.count()).select_from(Timer).where(Timer.state == "reviewing")) == 0
        assert verify_all(session, HISTORY_KEY)[2] == []


def test_a_due_action_that_fails_for_another_reason_rolls_the_case_back_and_stays_due(
    db: Database, rt: Runtime, province: Province, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = runtime_with(rt, HANDOVER)
    with db.write() as session:
        case_id = open_case(session, rt, province.actors["lead"], province.units["SNV"], "handover").id
    real_advance = sweep_module.advance

    def busy(*args: Any, **kwargs: Any) -> Any:
        raise IntegrityError("UPDATE cases ...", {}, Exception("database is busy"))

    monkeypatch.setattr(sweep_module, "advance", busy)
    report = sweep(db, rt, local(date(2026, 1, 13), 8))
    assert report.failed_cases == [case_id] and report.fired == []
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(TimerFiring)) == 0
        assert session.scalar(select(func.count()).select_from(HistoryEntry).where(HistoryEntry.case_id == case_id)) == 1
    monkeypatch.setattr(sweep_module, "advance", real_advance)
    again = sweep(db, rt, local(date(2026, 1, 13), 9))
    assert [(f.kind, f.detail) for f in again.fired] == [("due", "hand_over")]
    with db.read() as session:
        assert session.get(Case, case_id).state == "reviewing"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------- savepoints


def test_a_rolled_back_savepoint_leaves_no_ghost_and_the_next_case_opens(
    db: Database, rt: Runtime, province: Province
) -> None:
    with db.write() as session:
        unit = session.merge(province.units["SNV"])
        savepoint = session.begin_nested()  # what the sweep does around a case
        first = open_case(session, rt, province.actors["lead"], unit, "qms_lifecycle")
        savepoint.rollback()
        assert first not in session
        assert not [o for o in session.identity_map.values() if isinstance(o, Timer)]
        again = open_case(session, rt, province.actors["lead"], unit, "qms_lifecycle")
        assert_loaded_objects_match_their_rows(session)
        case_id = again.id
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 1
        assert session.scalar(select(func.count()).select_from(Timer).where(Timer.case_id == case_id)) == 1


def test_a_transition_rolled_back_by_its_caller_leaves_the_loaded_case_as_its_row(
    db: Database, rt: Runtime, province: Province
) -> None:
    with db.write() as session:
        case = open_case(session, rt, province.actors["lead"], province.units["THPT-TNH"], "qms_lifecycle")
    with db.write() as session:
        case = session.get(Case, case.id)  # type: ignore[assignment]
        (timer,) = session.scalars(select(Timer).where(Timer.case_id == case.id))
        savepoint = session.begin_nested()
        advance(session, rt, province.actors["tnh"], case.id, "approve_plan", PLAN)
        assert (case.state, timer.status) == ("building", "cancelled")
        savepoint.rollback()
        assert (case.state, case.version, timer.status) == ("planned", 1, "pending")
        assert_loaded_objects_match_their_rows(session)


# -------------------------------------------------------------------------------- one instant


def test_a_due_action_is_stamped_and_planned_at_the_sweeps_instant(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    rt = runtime_with(rt, HANDOVER)
    with db.write() as session:
        case_id = open_case(session, rt, province.actors["lead"], province.units["SNV"], "handover").id  # Mon 5 Jan
    now = local(date(2026, 1, 20), 8)  # the runtime clock still says 5 January
    sweep(db, rt, now)
    with db.read() as session:
        rows = list(session.scalars(select(HistoryEntry).where(HistoryEntry.case_id == case_id).order_by(HistoryEntry.seq)))
        assert [r.at for r in rows] == sorted(r.at for r in rows)
        assert [r.at for r in rows[1:]] == [now] * (len(rows) - 1)
        timer = session.scalars(select(Timer).where(Timer.case_id == case_id, Timer.status == "pending")).one()
        assert timer.start_date == local_date(now) and timer.created_at == now
        assert session.get(Case, case_id).updated_at == now  # type: ignore[union-attr]
    assert clock.now() < now


# ------------------------------------------------------------------------------------- one open case


def test_a_unit_holds_one_open_lifecycle_and_one_corrective_action_per_inspection(
    db: Database, rt: Runtime, province: Province
) -> None:
    lead, unit = province.actors["lead"], province.units["THPT-TNH"]
    with db.write() as session:
        first = open_case(session, rt, lead, unit, "qms_lifecycle").id
        open_case(session, rt, lead, unit, "corrective_action", MINUTES | {"minutes_signed_on": "2026-01-02"})
    before = rows_committed(db)
    with pytest.raises(Conflict) as info, db.write() as session:
        open_case(session, rt, lead, unit, "qms_lifecycle")
    assert info.value.details["case_id"] == first
    with pytest.raises(Conflict), db.write() as session:
        open_case(session, rt, lead, unit, "corrective_action", MINUTES | {"minutes_signed_on": "2026-01-02"})
    assert rows_committed(db) == before
    with db.write() as session:  # another inspection's minutes: a case of its own
        open_case(session, rt, lead, unit, "corrective_action", MINUTES | {"minutes_number": "15/BB", "minutes_signed_on": "2026-01-02"})
        advance(session, rt, lead, first, "withdraw", {"reason": "Sáp nhập"})
        open_case(session, rt, lead, unit, "qms_lifecycle")  # the first one is closed


def test_the_database_itself_refuses_a_second_open_case_with_the_same_key(
    db: Database, rt: Runtime, province: Province
) -> None:
    with db.write() as session:
        case = open_case(session, rt, province.actors["lead"], province.units["SNV"], "qms_lifecycle")
        columns = {c.name: getattr(case, c.key) for c in Case.__table__.columns if c.name != "id"}
    with pytest.raises(Conflict) as info, db.write() as session:
        session.execute(insert(Case.__table__).values(**columns))  # as a writer that skipped the service
    assert isinstance(info.value.__cause__ or info.value.__context__, IntegrityError)
    with db.write() as session:  # a closed one, or one without a key, is no conflict
        session.execute(insert(Case.__table__).values(**{**columns, "closed_at": columns["opened_at"]}))
        session.execute(insert(Case.__table__).values(**{**columns, "open_key": None}))


def test_the_migration_keys_existing_open_cases_and_reports_duplicates_by_case_id(tmp_path: Any) -> None:
    from alembic import command

    from qmsflow.bootstrap import alembic_config

    sa_engine = make_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    database = Database(sa_engine)
    config = alembic_config(database)
    with sa_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    with sa_engine.begin() as connection:
        connection.execute(text("INSERT INTO units (id, code, name, kind, is_lead, valid_from) VALUES (1, 'SNV', 'Sở Nội vụ', 'department', 0, '2025-07-01')"))
        for case_id in (1, 2, 3):
            connection.execute(text(
                "INSERT INTO cases (id, unit_id, workflow, workflow_version, state, version, data, opened_at, updated_at, "
                "closed_at, history_head, history_length) VALUES (:id, 1, 'qms_lifecycle', 1, 'planned', 1, '{}', "
                "'2026-01-05 02:00:00', '2026-01-05 02:00:00', :closed, '', 0)"
            ), {"id": case_id, "closed": "2026-01-06 02:00:00" if case_id == 1 else None})
    with sa_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with sa_engine.connect() as connection:
        keys = dict(connection.execute(text("SELECT id, open_key FROM cases ORDER BY id")).all())
        assert keys == {1: None, 2: "qms_lifecycle", 3: None}
        assert connection.execute(text("SELECT value FROM meta WHERE key = 'open_case_duplicates'")).scalar() == "[3]"
    database.dispose()


def test_a_conflict_keeps_its_message_and_details_through_pickling() -> None:
    error = pickle.loads(pickle.dumps(Conflict("code 30292 is already used", {"unit_id": 4})))
    assert (str(error), error.details) == ("code 30292 is already used", {"unit_id": 4})


# ------------------------------------------------------------------------------------------ mail


@contextmanager
def silent_smtp_server() -> Iterator[int]:
    """A server that accepts the connection and never greets (a hung relay, a half-open firewall)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def _queue_email(db: Database, rt: Runtime, address: str = "a@x.example") -> int:
    with db.write() as session:
        message = EmailMessage(
            message_id=f"<{address}@x>", kind="notification", to_address=address, to_name="", subject="s", body="b",
            created_at=rt.clock.now(), status="pending", attempts=0, next_attempt_at=rt.clock.now(),
        )
        session.add(message)
        session.flush()
        return message.id


def test_a_silent_smtp_server_does_not_hold_up_the_officers_writes(db: Database, rt: Runtime, province: Province) -> None:
    with db.write() as session:
        case_id = open_case(session, rt, province.actors["lead"], province.units["THPT-TNH"], "qms_lifecycle").id
    _queue_email(db, rt)
    mail = MailSettings(enabled=True, sender="q@x.example")
    with silent_smtp_server() as port:
        result: list[tuple[int, int]] = []
        sender = threading.Thread(target=lambda: result.append(send_pending(db, rt.clock.now(), SmtpMailer("127.0.0.1", port, timeout=3), mail)))
        sender.start()
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # wait until the batch is claimed and the sender is waiting on SMTP
                with db.read() as session:
                    if session.scalar(select(EmailMessage.claimed_until)) is not None:
                        break
                time.sleep(0.02)
            # an officer approving the plan while the scheduler waits on the mail server
            with db.write() as session:
                advance(session, rt, province.actors["tnh"], case_id, "approve_plan", PLAN)
            assert sender.is_alive(), "the write should not have had to wait for the mail server"
        finally:
            sender.join()
    assert result == [(0, 1)]
    with db.read() as session:
        message = session.scalars(select(EmailMessage)).one()
        assert (message.status, message.attempts, message.claimed_until) == ("pending", 1, None)
        assert session.get(Case, case_id).state == "building"  # type: ignore[union-attr]


class _Recorder:
    """A mailer that records what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    @contextmanager
    def connect(self) -> Iterator[Any]:
        yield lambda mime: self.sent.append(str(mime["Message-ID"]))


def test_a_sender_that_dies_after_claiming_leaves_the_mail_to_be_sent_once_its_lease_runs_out(
    db: Database, rt: Runtime
) -> None:
    _queue_email(db, rt)
    mail = MailSettings(enabled=True, sender="q@x.example", lease_seconds=600)
    now = rt.clock.now()
    assert len(_claim(db, now, now + timedelta(seconds=600), 10)) == 1  # ... and the process dies here
    recorder = _Recorder()
    assert send_pending(db, now + timedelta(seconds=599), recorder, mail) == (0, 0)  # still leased: not twice at once
    assert send_pending(db, now + timedelta(seconds=600), recorder, mail) == (1, 0)
    assert len(recorder.sent) == 1
    with db.read() as session:
        message = session.scalars(select(EmailMessage)).one()
        assert (message.status, message.attempts, message.claimed_until) == ("sent", 1, None)
