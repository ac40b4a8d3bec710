"""From the outbox to people: inbox items by role, emails through a real SMTP server, retries, digests.

Each email has a stable Message-ID and is sent at least once; while the SMTP server is down it stays
queued and is retried with exponential backoff on the injected clock; once the server is back every
message arrives, each Message-ID once. A digest gathers a person's items once a day.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from qmsflow.engine import Database, FixedClock, Runtime, open_case
from qmsflow.engine.models import Case, EmailMessage, InboxItem, Notification, Unit, User
from qmsflow.engine.notifications import MailSettings, SmtpMailer, inbox, queue_digests, route, send_pending
from qmsflow.engine.sweep import sweep
from tests.conftest import Province, allow_another_open_case, local

MAIL = MailSettings(enabled=True, sender="qmsflow@angiang.example", retry_initial_seconds=60, retry_max_seconds=3600)
# first retry after a minute, doubling, never more than an hour apart
BACKOFF_SECONDS = [60, 120, 240, 480, 960, 1920, 3600, 3600]


# ------------------------------------------------------------------------------- the SMTP server


@dataclass(frozen=True)
class Received:
    """One message as the SMTP server took it."""

    message_id: str
    recipients: tuple[str, ...]
    subject: str


class RecordingHandler:
    """An aiosmtpd handler that keeps what arrives."""

    def __init__(self) -> None:
        self.messages: list[Received] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mime = message_from_bytes(envelope.original_content or envelope.content, policy=default_policy)
        self.messages.append(Received(str(mime["Message-ID"]), tuple(envelope.rcpt_tos), str(mime["Subject"])))
        return "250 Message accepted for delivery"


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.handler = RecordingHandler()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def received(self) -> list[Received]:
        return self.handler.messages


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A running SMTP server that records each message's Message-ID and recipients."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


# ----------------------------------------------------------------------------------- the story


def open_qms_cases(db: Database, rt: Runtime, clock: FixedClock, province: Province, day: date, *units: str) -> None:
    """Open a QMS lifecycle case for each unit on ``day`` (its plan is due 30 working days later)."""
    clock.set(local(day, 9))
    with db.write() as session:
        for code in units:
            allow_another_open_case(session, province.units[code])  # two cases of one unit: two items for one person
            open_case(session, rt, province.actors["lead"], session.merge(province.units[code]), "qms_lifecycle")


def scheduler_runs(db: Database, rt: Runtime, clock: FixedClock, day: date, hour: int = 9) -> None:
    """What a scheduler wake-up does before sending mail: sweep due timers, route the outbox."""
    clock.set(local(day, hour))
    sweep(db, rt, clock.now())
    route(db, clock.now(), MAIL)


def inbox_of(db: Database, username: str) -> list[tuple[str, str, int]]:
    """A user's inbox as (unit of the case, kind, level), oldest first."""
    with db.read() as session:
        user = session.scalars(select(User).where(User.username == username)).one()
        items = inbox(session, user)
        units = dict(session.execute(select(Case.id, Unit.code).join(Unit, Unit.id == Case.unit_id)).tuples().all())
        return sorted((units[n.case_id], n.kind, n.level) for _, n in items)


def queued_emails(db: Database) -> list[EmailMessage]:
    """Every email row, in the order they were queued (detached, as they stand now)."""
    with db.read() as session:
        emails = list(session.scalars(select(EmailMessage).order_by(EmailMessage.id)))
        session.expunge_all()  # keep the loaded values past the read session's rollback
        return emails


def escalation_addresses(db: Database) -> dict[tuple[str, int], set[str]]:
    """Who each escalation was mailed to, by (unit of the case, level)."""
    with db.read() as session:
        rows = session.execute(
            select(Unit.code, Notification.level, EmailMessage.to_address)
            .join(Notification, Notification.id == EmailMessage.notification_id)
            .join(Case, Case.id == Notification.case_id)
            .join(Unit, Unit.id == Case.unit_id)
        ).tuples()
        found: dict[tuple[str, int], set[str]] = {}
        for code, level, address in rows:
            found.setdefault((code, level), set()).add(address)
        return found


def assert_each_queued_email_arrived_exactly_once(db: Database, smtp: SmtpServer) -> None:
    """Every queued email was sent, arrived under its Message-ID once, addressed to its recipient only."""
    emails = queued_emails(db)
    assert {e.status for e in emails} == {"sent"}
    assert Counter(m.message_id for m in smtp.received) == Counter(e.message_id for e in emails)
    to = {e.message_id: e.to_address for e in emails}
    assert all(m.recipients == (to[m.message_id],) for m in smtp.received)


# ------------------------------------------------------------------------------------- the tests


def test_escalations_are_mailed_to_everyone_concerned_and_reach_the_inboxes_of_the_role_holders(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, smtp: SmtpServer
) -> None:
    open_qms_cases(db, rt, clock, province, date(2026, 1, 5), "THPT-TNH", "THCS-MT")  # due Mon 23 Feb
    # by 3 March level 1 (the unit's head, 24 Feb) and level 2 (the supervisor, 3 Mar) have passed
    scheduler_runs(db, rt, clock, date(2026, 3, 3))

    assert send_pending(db, clock.now(), SmtpMailer("127.0.0.1", smtp.port), MAIL) == (10, 0)

    assert escalation_addresses(db) == {
        ("THPT-TNH", 1): {"tnh@example.org", "head@thpt-tnh.example", "iso@thpt-tnh.example"},
        ("THPT-TNH", 2): {"gddt@example.org", "head@sgddt.example"},
        ("THCS-MT", 1): {"thcs@example.org", "head@thcs-mt.example", "iso@thcs-mt.example"},
        ("THCS-MT", 2): {"mythoi@example.org", "head@30301.example"},
    }
    assert_each_queued_email_arrived_exactly_once(db, smtp)
    assert all(m.message_id.endswith("@angiang.example>") for m in smtp.received)

    # the unit's officer gets level 1, the supervisor of the unit's parent level 2, and a supervisor
    # never sees another branch of the hierarchy
    assert inbox_of(db, "tnh") == [("THPT-TNH", "escalation", 1)]
    assert inbox_of(db, "gddt") == [("THPT-TNH", "escalation", 2)]
    assert inbox_of(db, "thcs") == [("THCS-MT", "escalation", 1)]
    assert inbox_of(db, "mythoi") == [("THCS-MT", "escalation", 2)]
    for nobody in ("lead", "viewer", "snv", "admin"):
        assert inbox_of(db, nobody) == []


def test_while_the_smtp_server_is_down_nothing_is_lost_and_retries_back_off_on_the_clock(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, smtp: SmtpServer
) -> None:
    mailer = SmtpMailer("127.0.0.1", smtp.port)
    open_qms_cases(db, rt, clock, province, date(2026, 1, 5), "THPT-TNH", "THCS-MT")
    scheduler_runs(db, rt, clock, date(2026, 3, 3))
    assert send_pending(db, clock.now(), mailer, MAIL) == (10, 0)

    smtp.stop()
    scheduler_runs(db, rt, clock, date(2026, 3, 10))  # level 3: the Dept of S&T, for both cases
    waiting = {e.id: e.to_address for e in queued_emails(db) if e.status == "pending"}
    assert sorted(waiting.values()) == ["head@skhcn.example"] * 2 + ["lead@example.org"] * 2

    def retrying() -> list[EmailMessage]:
        return [e for e in queued_emails(db) if e.id in waiting]

    for attempt, delay in enumerate(BACKOFF_SECONDS, start=1):
        assert send_pending(db, clock.now(), mailer, MAIL) == (0, 4)
        for email in retrying():
            assert email.status == "pending"  # kept, never dropped
            assert email.attempts == attempt
            assert email.next_attempt_at == clock.now() + timedelta(seconds=delay)
            assert "ConnectionRefusedError" in (email.last_error or "")
        clock.advance(timedelta(seconds=delay - 1))
        assert send_pending(db, clock.now(), mailer, MAIL) == (0, 0)  # not due yet: not even tried
        assert all(e.attempts == attempt for e in retrying())
        clock.advance(timedelta(seconds=1))

    smtp.start()  # back, on the same port
    clock.advance(timedelta(seconds=-1))
    assert send_pending(db, clock.now(), mailer, MAIL) == (0, 0)  # the backoff holds even now
    assert len(smtp.received) == 10
    clock.advance(timedelta(seconds=1))
    assert send_pending(db, clock.now(), mailer, MAIL) == (4, 0)

    assert_each_queued_email_arrived_exactly_once(db, smtp)
    assert len(smtp.received) == 14
    assert inbox_of(db, "lead") == [("THCS-MT", "escalation", 3), ("THPT-TNH", "escalation", 3)]


def test_the_daily_digest_gathers_each_persons_undigested_items_once_a_day(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, smtp: SmtpServer
) -> None:
    open_qms_cases(db, rt, clock, province, date(2026, 1, 5), "THPT-TNH", "THPT-TNH", "THCS-MT")
    scheduler_runs(db, rt, clock, date(2026, 3, 10))  # levels 1, 2 and 3 of all three at once

    morning = local(date(2026, 3, 11), 7, 30)
    assert queue_digests(db, morning, MAIL) == 5
    digests = {e.to_address: e for e in queued_emails(db) if e.kind == "digest"}
    items_listed = {address: e.body.count("\n- [") for address, e in digests.items()}
    assert items_listed == {
        "tnh@example.org": 2, "gddt@example.org": 2, "thcs@example.org": 1, "mythoi@example.org": 1, "lead@example.org": 3,
    }
    assert all(f"({items_listed[a]} mục)" in e.subject and "11/03/2026" in e.subject for a, e in digests.items())
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(InboxItem).where(InboxItem.digested_at.is_(None))) == 0

    assert send_pending(db, morning, SmtpMailer("127.0.0.1", smtp.port), MAIL) == (len(queued_emails(db)), 0)
    assert_each_queued_email_arrived_exactly_once(db, smtp)
    assert {m.recipients for m in smtp.received if m.subject.startswith("Tổng hợp")} == {(a,) for a in digests}

    # a second scheduler's digest job, later the same day, makes no second digest
    assert queue_digests(db, local(date(2026, 3, 11), 8, 15), MAIL) == 0
    assert len([e for e in queued_emails(db) if e.kind == "digest"]) == 5


def test_an_item_routed_after_todays_digest_waits_for_tomorrows(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    # Regression: a second digest run the same day marked items routed since the first digest as
    # digested without mailing them, so no digest ever listed them.
    open_qms_cases(db, rt, clock, province, date(2026, 1, 5), "THPT-TNH")  # level 1 passes 24 Feb
    open_qms_cases(db, rt, clock, province, date(2026, 1, 6), "THPT-TNH")  # level 1 passes 25 Feb
    scheduler_runs(db, rt, clock, date(2026, 2, 24))
    assert queue_digests(db, local(date(2026, 2, 25), 7, 30), MAIL) == 1  # the first case's level 1
    scheduler_runs(db, rt, clock, date(2026, 2, 25))  # the sweep catches up at 09:00: the second case
    assert queue_digests(db, local(date(2026, 2, 25), 9, 30), MAIL) == 0  # today's digest is made

    assert queue_digests(db, local(date(2026, 2, 26), 7, 30), MAIL) == 1
    tnh_digests = [e for e in queued_emails(db) if e.kind == "digest" and e.to_address == "tnh@example.org"]
    assert [e.body.count("\n- [") for e in tnh_digests] == [1, 1]


class RefusingHandler(RecordingHandler):
    """Refuses one mailbox permanently (550), as a real server does for an address that does not exist."""

    def __init__(self, refused: str) -> None:
        super().__init__()
        self.refused = refused

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address == self.refused:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_permanently_refused_address_is_marked_rejected_and_the_others_still_go(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    server = SmtpServer()
    server.handler = RefusingHandler("head@thpt-tnh.example")
    server.start()
    try:
        open_qms_cases(db, rt, clock, province, date(2026, 1, 5), "THPT-TNH")
        scheduler_runs(db, rt, clock, date(2026, 2, 24))  # level 1: officer, head and ISO contact
        assert send_pending(db, clock.now(), SmtpMailer("127.0.0.1", server.port), MAIL) == (2, 1)
        by_address = {e.to_address: e for e in queued_emails(db)}
        assert by_address["head@thpt-tnh.example"].status == "rejected"
        assert "550" in (by_address["head@thpt-tnh.example"].last_error or "")
        assert {by_address[a].status for a in ("tnh@example.org", "iso@thpt-tnh.example")} == {"sent"}
        clock.advance(timedelta(days=1))
        assert send_pending(db, clock.now(), SmtpMailer("127.0.0.1", server.port), MAIL) == (0, 0)  # not retried
    finally:
        server.stop()


def test_emails_link_to_the_case_page_under_the_web_base_url_in_the_readers_words(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    open_qms_cases(db, rt, clock, province, date(2026, 1, 5), "THPT-TNH")
    clock.set(local(date(2026, 3, 3), 9))
    sweep(db, rt, clock.now())
    linked = MailSettings(enabled=True, sender=MAIL.sender, web_base_url="https://iso.angiang.example/")
    route(db, clock.now(), linked)
    with db.read() as session:
        case_id = session.scalars(select(Case.id)).one()
    page = f"https://iso.angiang.example/cases/{case_id}"
    notices = [e for e in queued_emails(db) if e.kind == "notification"]
    assert notices and all(e.body.rstrip().endswith(f"Mở hồ sơ: {page}") for e in notices)

    assert queue_digests(db, local(date(2026, 3, 4), 7, 30), linked) > 0
    digests = [e for e in queued_emails(db) if e.kind == "digest"]
    assert digests and all(f"\n  {page}" in e.body for e in digests)


def test_without_a_web_base_url_emails_carry_no_link(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> None:
    open_qms_cases(db, rt, clock, province, date(2026, 1, 5), "THPT-TNH")
    scheduler_runs(db, rt, clock, date(2026, 3, 3))
    assert queued_emails(db) and not any("/cases/" in e.body for e in queued_emails(db))
