"""From the outbox to people: in-app inbox items, emails (at least once, stable Message-ID), digests.

The sweep writes a Notification in the same transaction as the escalation. ``route`` later turns it
into inbox items and emails for the people who hold the target role *at routing time* (staff
change; the unit hierarchy changes). ``send_pending`` hands emails to the mailer and, when it fails,
schedules the next try on the clock with exponential backoff, so nothing is lost while the SMTP
server is down. An email may go out twice if the process dies between sending and committing; its
Message-ID is the same both times, so mail systems and readers can drop the copy.

Each email is written in its recipient's language: a user's ``language``, or for a unit contact
(who has no account) the installation's language. A notification says its kind and parameters;
``messages.render_notification`` makes the words for one reader.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage as MimeMessage
from email.utils import format_datetime, formataddr
from typing import Protocol, cast

from sqlalchemy import ColumnElement, Table, insert, or_, select, update
from sqlalchemy.orm import Session

from .clock import local_date
from .db import Database
from .language import DEFAULT_LANGUAGE
from .messages import local_time, render_notification, text
from .models import Contact, EmailMessage, InboxItem, Notification, User, keep_in_step

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MailSettings:
    """What delivery needs to know about email."""

    enabled: bool = False
    sender: str = "qmsflow@localhost"
    retry_initial_seconds: int = 60
    retry_max_seconds: int = 3600
    # how long a sender holds a claimed batch before another may send it (longer than a batch takes)
    lease_seconds: int = 600
    # Where officials reach the web app (``[web] base_url``, QMSFLOW_WEB_BASE_URL); emails link to
    # the case page under it. Empty: emails carry no link.
    web_base_url: str = ""

    @property
    def domain(self) -> str:
        """The domain Message-IDs are made in."""
        return self.sender.rsplit("@", 1)[-1] or "localhost"

    def case_url(self, case_id: int) -> str | None:
        """The address of a case's page (qmsflow/web/cases.py), or None without a base URL."""
        return f"{self.web_base_url.rstrip('/')}/cases/{case_id}" if self.web_base_url else None


class Mailer(Protocol):
    """Anything that can open a connection and send messages over it."""

    def connect(self) -> AbstractContextManager[Callable[[MimeMessage], None]]:
        """Open a connection (raise OSError or smtplib.SMTPException if it cannot) yielding a send function."""
        ...


class SmtpMailer:
    """Sends through an SMTP server, one connection per batch of messages."""

    def __init__(self, host: str, port: int, *, username: str = "", password: str = "", starttls: bool = False, timeout: float = 10) -> None:
        self.host, self.port = host, port
        self.username, self.password, self.starttls, self.timeout = username, password, starttls, timeout

    @contextmanager
    def connect(self) -> Iterator[Callable[[MimeMessage], None]]:
        """Open one SMTP session and yield a function that sends a message over it."""
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password)

            def send(message: MimeMessage) -> None:
                smtp.send_message(message)

            yield send


def _message_id(kind: str, key: str, address: str, domain: str) -> str:
    digest = hashlib.sha256(address.lower().encode()).hexdigest()[:12]
    return f"<qmsflow.{kind}.{key}.{digest}@{domain}>"


# Who receives a notification for each target: users holding these roles, and these unit contacts.
_USER_ROLES = {
    "unit": ("unit_officer",),
    "unit_head": ("unit_officer",),
    "supervisor": ("supervisor",),
    "lead": ("lead",),
    "provincial_pc": ("viewer",),
}
_CONTACT_ROLES = {
    "unit": ("iso_officer",),
    "unit_head": ("head", "iso_officer"),
    "supervisor": ("head",),
    "lead": ("head",),
    "provincial_pc": ("head",),
}


def recipients(session: Session, notification: Notification) -> tuple[list[User], list[Contact]]:
    """Return the users and contacts who receive ``notification``, as the hierarchy stands now."""
    unit_id = notification.target_unit_id
    target = notification.target
    user_query = select(User).where(User.active.is_(True), User.role.in_(_USER_ROLES[target]))
    if target in ("lead", "provincial_pc"):
        # province-wide roles: the lead officers and leadership may hold no unit at all
        user_query = user_query.where((User.unit_id == unit_id) | User.unit_id.is_(None))
    else:
        user_query = user_query.where(User.unit_id == unit_id)
    contact_roles = _CONTACT_ROLES[target]
    contacts = session.scalars(select(Contact).where(Contact.unit_id == unit_id, Contact.role.in_(contact_roles)))
    return list(session.scalars(user_query.order_by(User.id))), list(contacts)


def route(
    db: Database, now: datetime, mail: MailSettings, *, batch_size: int = 200, max_batches: int | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> int:
    """Turn pending notifications into inbox items and queued emails; return how many were routed.

    Each batch is one transaction of the same few statements whatever its size: the batch, its
    recipients (users and contacts of all its target units at once), one insert each for inbox items
    and emails, one update of the notifications. ``max_batches`` bounds one call, so a backlog is
    routed over several scheduler wake-ups while the sweep goes on (``SchedulerService``).
    ``language`` is what a unit contact's email is written in; a user's email is in the user's own.
    """
    routed = batches = 0
    while max_batches is None or batches < max_batches:
        with db.write() as session:
            query = select(Notification).where(Notification.status == "pending").order_by(Notification.id).limit(batch_size)
            if not db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            batch = list(session.scalars(query))
            if batch:
                _route_batch(session, batch, now, mail, language)
            routed += len(batch)
            batches += 1
        if len(batch) < batch_size:
            break
    return routed


def _route_batch(session: Session, batch: list[Notification], now: datetime, mail: MailSettings, language: str) -> None:
    unit_ids = {n.target_unit_id for n in batch}
    roles = {role for n in batch for role in _USER_ROLES[n.target]}
    province_wide = any(n.target in ("lead", "provincial_pc") for n in batch)
    unit_clause: ColumnElement[bool] = User.unit_id.in_(unit_ids)
    if province_wide:
        unit_clause = unit_clause | User.unit_id.is_(None)
    users = list(session.scalars(select(User).where(User.active.is_(True), User.role.in_(roles), unit_clause).order_by(User.id)))
    contacts = list(session.scalars(select(Contact).where(Contact.unit_id.in_(unit_ids)).order_by(Contact.id)))
    inbox_rows: list[dict[str, object]] = []
    email_rows: list[dict[str, object]] = []
    for notification in batch:
        target, unit_id = notification.target, notification.target_unit_id
        wide = target in ("lead", "provincial_pc")  # the lead officers and leadership may hold no unit at all
        to_users = [
            u for u in users
            if u.role in _USER_ROLES[target] and (u.unit_id == unit_id or (wide and u.unit_id is None))
        ]
        to_contacts = [c for c in contacts if c.unit_id == unit_id and c.role in _CONTACT_ROLES[target]]
        inbox_rows.extend({"notification_id": notification.id, "user_id": u.id, "created_at": now} for u in to_users)
        if mail.enabled:
            email_rows.extend(_emails(notification, to_users, to_contacts, now, mail, language))
    if inbox_rows:
        session.execute(insert(cast(Table, InboxItem.__table__)), inbox_rows)
    if email_rows:
        session.execute(insert(cast(Table, EmailMessage.__table__)), email_rows)
    routed = {"status": "routed", "routed_at": now}
    session.execute(update(cast(Table, Notification.__table__)).where(Notification.id.in_([n.id for n in batch])).values(**routed))
    for notification in batch:
        keep_in_step(notification, routed)


def _emails(
    notification: Notification, users: Iterable[User], contacts: Iterable[Contact], now: datetime, mail: MailSettings,
    language: str,
) -> list[dict[str, object]]:
    addresses: dict[str, tuple[str, str]] = {}  # address -> (name, language); a user's own language wins
    # Escalations are mailed at once to everyone concerned; reminders to the unit's ISO officer only,
    # the officers' own copies wait for the morning digest.
    if notification.kind == "escalation":
        for user in users:
            if user.email:
                addresses.setdefault(user.email.lower(), (user.full_name or user.username, user.language))
    for contact in contacts:
        if contact.email:
            addresses.setdefault(contact.email.lower(), (contact.name, language))
    words: dict[str, tuple[str, str]] = {}
    rows: list[dict[str, object]] = []
    for address, (name, reader_language) in addresses.items():
        if reader_language not in words:
            words[reader_language] = render_notification(notification, reader_language)
        subject, body = words[reader_language]
        url = mail.case_url(notification.case_id)
        if url:
            body = body.rstrip("\n") + "\n\n" + text(reader_language, "case_link", url=url) + "\n"
        rows.append({
            "message_id": _message_id("n", str(notification.id), address, mail.domain),
            "notification_id": notification.id, "kind": "notification", "to_address": address, "to_name": name,
            "subject": subject, "body": body, "created_at": now, "status": "pending",
            "attempts": 0, "next_attempt_at": now,
        })
    return rows


def queue_digests(db: Database, now: datetime, mail: MailSettings, language: str | None = None) -> int:
    """Queue one email per person gathering their inbox items not yet digested; return how many.

    Each digest is in its recipient's language (``users.language``); ``language`` is accepted for
    callers from before users had one and is not used.
    """
    if not mail.enabled:
        return 0
    day = local_date(now)
    queued = 0
    with db.write() as session:
        rows = session.execute(
            select(InboxItem, Notification, User)
            .join(Notification, Notification.id == InboxItem.notification_id)
            .join(User, User.id == InboxItem.user_id)
            .where(InboxItem.digested_at.is_(None), InboxItem.read_at.is_(None))
            .order_by(User.id, Notification.id)
        ).all()
        by_user: dict[int, tuple[User, list[tuple[InboxItem, Notification]]]] = {}
        for item, notification, user in rows:
            by_user.setdefault(user.id, (user, []))[1].append((item, notification))
        for user, items in by_user.values():
            message_id = _message_id("digest", f"u{user.id}.{day:%Y%m%d}", user.email, mail.domain) if user.email else ""
            if message_id and session.scalar(select(EmailMessage.id).where(EmailMessage.message_id == message_id)) is not None:
                continue  # today's digest is made (maybe by another scheduler): these items wait for tomorrow's
            for item, _ in items:
                item.digested_at = now
            if not user.email:
                continue
            reader = user.language
            lines = [text(reader, "digest_intro", name=user.full_name or user.username)]
            for _, notification in items:
                url = mail.case_url(notification.case_id)
                lines.append(
                    f"- [{local_time(notification.created_at)}] {render_notification(notification, reader)[0]}"
                    + (f"\n  {url}" if url else "")
                )
            session.add(
                EmailMessage(
                    message_id=message_id, notification_id=None, kind="digest", to_address=user.email.lower(),
                    to_name=user.full_name or user.username,
                    subject=text(reader, "digest_subject", day=day.strftime("%d/%m/%Y"), count=len(items)),
                    body="\n".join(lines) + "\n", created_at=now, status="pending", attempts=0, next_attempt_at=now,
                )
            )
            queued += 1
    return queued


def to_mime(message: EmailMessage, sender: str) -> MimeMessage:
    """Build the MIME message, with its stable Message-ID."""
    mime = MimeMessage()
    mime["From"] = sender
    mime["To"] = formataddr((message.to_name, message.to_address))
    mime["Subject"] = message.subject
    mime["Message-ID"] = message.message_id
    mime["Date"] = format_datetime(message.created_at)
    mime.set_content(message.body)
    return mime


def _permanent(exc: Exception) -> bool:
    # A 5xx answer about this message (unknown mailbox, refused recipient) will not change by retrying.
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPResponseException) and 500 <= exc.smtp_code < 600 and not isinstance(
        exc, smtplib.SMTPServerDisconnected
    )


def _retry_later(message: EmailMessage, exc: Exception, now: datetime, mail: MailSettings) -> None:
    message.attempts += 1
    delay = min(mail.retry_initial_seconds * 2 ** (message.attempts - 1), mail.retry_max_seconds)
    message.next_attempt_at = now + timedelta(seconds=delay)
    message.last_error = f"{type(exc).__name__}: {exc}"[:1000]


def send_pending(db: Database, now: datetime, mailer: Mailer, mail: MailSettings, *, batch_size: int = 100) -> tuple[int, int]:
    """Send every due email; return (sent, failed). A failure is retried later with backoff, never dropped.

    No transaction is open while the SMTP server is talked to: on SQLite one would hold the write
    lock, and a server that accepts the connection and stays silent would make every user's write
    fail. So each batch is *claimed* with a lease (``claimed_until``) and committed, sent outside any
    transaction, and its outcome recorded in a second short transaction. A sender that dies between
    the two leaves the lease to run out, and the message goes out later: at least once, under the same
    Message-ID. Each batch goes over one connection; if the server cannot be reached, the rest of the
    batch is rescheduled at once and sending stops until the next cycle. A message the server rejects
    permanently (5xx) is marked ``rejected`` with the reason.
    """
    sent = failed = 0
    while True:
        lease = now + timedelta(seconds=mail.lease_seconds)
        batch = _claim(db, now, lease, batch_size)
        if not batch:
            return sent, failed
        outcomes: list[tuple[EmailMessage, Exception | None, bool]] = []  # (message, error, permanent)
        unreachable: Exception | None = None
        try:
            with mailer.connect() as send:
                for message in batch:
                    try:
                        send(to_mime(message, mail.sender))
                    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
                        if not _permanent(exc):
                            raise
                        outcomes.append((message, exc, True))
                        log.warning("email %s to %s rejected: %s", message.id, message.to_address, exc)
                    else:
                        outcomes.append((message, None, False))
        except (OSError, smtplib.SMTPException) as exc:
            unreachable = exc
            rest = batch[len(outcomes):]
            outcomes.extend((message, exc, False) for message in rest)
            log.warning("email: %s messages rescheduled, server unavailable: %s", len(rest), exc)
        _record(db, now, lease, outcomes, mail)
        sent += sum(1 for _, error, _ in outcomes if error is None)
        failed += sum(1 for _, error, _ in outcomes if error is not None)
        if unreachable is not None or len(batch) < batch_size:
            return sent, failed


def _claim(db: Database, now: datetime, lease: datetime, batch_size: int) -> list[EmailMessage]:
    """Lease a batch of due, unclaimed (or lease-expired) emails and commit; return them, detached."""
    with db.write() as session:
        query = (
            select(EmailMessage)
            .where(
                EmailMessage.status == "pending",
                EmailMessage.next_attempt_at <= now,
                or_(EmailMessage.claimed_until.is_(None), EmailMessage.claimed_until <= now),
            )
            .order_by(EmailMessage.next_attempt_at, EmailMessage.id)
            .limit(batch_size)
        )
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        batch = list(session.scalars(query))
        for message in batch:
            message.claimed_until = lease
        session.flush()
        session.expunge_all()  # read after the commit, outside any session
    return batch


def _record(db: Database, now: datetime, lease: datetime, outcomes: list[tuple[EmailMessage, Exception | None, bool]], mail: MailSettings) -> None:
    """Record what sending did, for the messages this sender still holds the lease of, and release them."""
    if not outcomes:
        return
    with db.write() as session:
        held = {
            m.id: m
            for m in session.scalars(
                select(EmailMessage).where(
                    EmailMessage.id.in_([m.id for m, _, _ in outcomes]),
                    EmailMessage.status == "pending",
                    EmailMessage.claimed_until == lease,
                )
            )
        }
        for claimed, error, permanent in outcomes:
            message = held.get(claimed.id)
            if message is None:  # the lease ran out and another sender took it over: its word counts
                continue
            message.claimed_until = None
            if error is None:
                message.attempts += 1
                message.status, message.sent_at, message.next_attempt_at = "sent", now, None
            elif permanent:
                message.attempts += 1
                message.status, message.next_attempt_at = "rejected", None
                message.last_error = f"{type(error).__name__}: {error}"[:1000]
            else:
                _retry_later(message, error, now, mail)


def inbox(session: Session, user: User, *, unread_only: bool = False, limit: int = 100) -> list[tuple[InboxItem, Notification]]:
    """Return a user's inbox, newest first."""
    query = (
        select(InboxItem, Notification)
        .join(Notification, Notification.id == InboxItem.notification_id)
        .where(InboxItem.user_id == user.id)
        .order_by(InboxItem.id.desc())
        .limit(limit)
    )
    if unread_only:
        query = query.where(InboxItem.read_at.is_(None))
    return [(item, notification) for item, notification in session.execute(query).tuples()]


__all__ = [
    "MailSettings",
    "Mailer",
    "SmtpMailer",
    "inbox",
    "queue_digests",
    "recipients",
    "route",
    "send_pending",
    "to_mime",
]
