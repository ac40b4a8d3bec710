"""From the outbox to people: in-app inbox items, emails (at least once, stable Message-ID), digests.

The sweep writes a Notification in the same transaction as the escalation. ``route`` later turns it
into inbox items and emails for the people who hold the target role *at routing time* (staff
change; the unit hierarchy changes). ``send_pending`` hands emails to the mailer and, when it fails,
schedules the next try on the clock with exponential backoff, so nothing is lost while the SMTP
server is down. An email may go out twice if the process dies between sending and committing; its
Message-ID is the same both times, so mail systems and readers can drop the copy.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage as MimeMessage
from email.utils import format_datetime, formataddr
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from .clock import local_date
from .db import Database
from .messages import local_time, text
from .models import Contact, EmailMessage, InboxItem, Notification, Unit, User

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MailSettings:
    """What delivery needs to know about email."""

    enabled: bool = False
    sender: str = "qmsflow@localhost"
    retry_initial_seconds: int = 60
    retry_max_seconds: int = 3600

    @property
    def domain(self) -> str:
        """The domain Message-IDs are made in."""
        return self.sender.rsplit("@", 1)[-1] or "localhost"


class Mailer(Protocol):
    """Anything that can send one message or raise."""

    def send(self, message: MimeMessage) -> None:
        """Send ``message``; raise OSError or smtplib.SMTPException on failure."""
        ...


class SmtpMailer:
    """Sends through an SMTP server, one connection per batch of messages."""

    def __init__(self, host: str, port: int, *, username: str = "", password: str = "", starttls: bool = False, timeout: float = 10) -> None:
        self.host, self.port = host, port
        self.username, self.password, self.starttls, self.timeout = username, password, starttls, timeout

    def send(self, message: MimeMessage) -> None:
        """Send one message."""
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(message)


def _message_id(kind: str, key: str, address: str, domain: str) -> str:
    digest = hashlib.sha256(address.lower().encode()).hexdigest()[:12]
    return f"<qmsflow.{kind}.{key}.{digest}@{domain}>"


def recipients(session: Session, notification: Notification) -> tuple[list[User], list[Contact]]:
    """Return the users and contacts who receive ``notification``, as the hierarchy stands now."""
    unit_id = notification.target_unit_id
    roles = {
        "unit": ("unit_officer",),
        "unit_head": ("unit_officer",),
        "supervisor": ("supervisor",),
        "lead": ("lead",),
        "provincial_pc": ("viewer",),
    }[notification.target]
    user_query = select(User).where(User.active.is_(True), User.role.in_(roles))
    if notification.target == "lead":
        user_query = user_query.where((User.unit_id == unit_id) | User.unit_id.is_(None))
    elif notification.target == "provincial_pc":
        user_query = user_query.where((User.unit_id == unit_id) | User.unit_id.is_(None))
    else:
        user_query = user_query.where(User.unit_id == unit_id)
    contact_roles = ("iso_officer",) if notification.target == "unit" else ("head", "iso_officer") if notification.target == "unit_head" else ("head",)
    contacts = session.scalars(select(Contact).where(Contact.unit_id == unit_id, Contact.role.in_(contact_roles)))
    return list(session.scalars(user_query.order_by(User.id))), list(contacts)


def route(db: Database, now: datetime, mail: MailSettings, *, batch_size: int = 200) -> int:
    """Turn pending notifications into inbox items and queued emails; return how many were routed."""
    routed = 0
    while True:
        with db.write() as session:
            query = select(Notification).where(Notification.status == "pending").order_by(Notification.id).limit(batch_size)
            if not db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            batch = list(session.scalars(query))
            for notification in batch:
                users, contacts = recipients(session, notification)
                for user in users:
                    session.add(InboxItem(notification_id=notification.id, user_id=user.id, created_at=now))
                if mail.enabled:
                    _queue_emails(session, notification, users, contacts, now, mail)
                notification.status, notification.routed_at = "routed", now
            routed += len(batch)
        if len(batch) < batch_size:
            return routed


def _queue_emails(
    session: Session, notification: Notification, users: Iterable[User], contacts: Iterable[Contact], now: datetime, mail: MailSettings
) -> None:
    addresses: dict[str, str] = {}
    # Escalations are mailed at once to everyone concerned; reminders to the unit's ISO officer only,
    # the officers' own copies wait for the morning digest.
    if notification.kind == "escalation":
        for user in users:
            if user.email:
                addresses.setdefault(user.email.lower(), user.full_name or user.username)
    for contact in contacts:
        if contact.email:
            addresses.setdefault(contact.email.lower(), contact.name)
    for address, name in addresses.items():
        session.add(
            EmailMessage(
                message_id=_message_id("n", str(notification.id), address, mail.domain),
                notification_id=notification.id, kind="notification", to_address=address, to_name=name,
                subject=notification.subject, body=notification.body, created_at=now, status="pending",
                attempts=0, next_attempt_at=now,
            )
        )


def queue_digests(db: Database, now: datetime, mail: MailSettings, language: str = "vi") -> int:
    """Queue one email per person gathering their inbox items not yet digested; return how many."""
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
            for item, _ in items:
                item.digested_at = now
            if not user.email:
                continue
            message_id = _message_id("digest", f"u{user.id}.{day:%Y%m%d}", user.email, mail.domain)
            if session.scalar(select(EmailMessage.id).where(EmailMessage.message_id == message_id)) is not None:
                continue  # another scheduler already made today's digest
            lines = [text(language, "digest_intro", name=user.full_name or user.username)]
            for _, notification in items:
                lines.append(f"- [{local_time(notification.created_at)}] {notification.subject}")
            session.add(
                EmailMessage(
                    message_id=message_id, notification_id=None, kind="digest", to_address=user.email.lower(),
                    to_name=user.full_name or user.username,
                    subject=text(language, "digest_subject", day=day.strftime("%d/%m/%Y"), count=len(items)),
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


def send_pending(db: Database, now: datetime, mailer: Mailer, mail: MailSettings, *, batch_size: int = 100) -> tuple[int, int]:
    """Send due emails; return (sent, failed). A failure is retried later with backoff, never dropped."""
    sent = failed = 0
    with db.write() as session:
        query = (
            select(EmailMessage)
            .where(EmailMessage.status == "pending", EmailMessage.next_attempt_at <= now)
            .order_by(EmailMessage.next_attempt_at, EmailMessage.id)
            .limit(batch_size)
        )
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        for message in session.scalars(query):
            try:
                mailer.send(to_mime(message, mail.sender))
            except (OSError, smtplib.SMTPException) as exc:
                message.attempts += 1
                delay = min(mail.retry_initial_seconds * 2 ** (message.attempts - 1), mail.retry_max_seconds)
                message.next_attempt_at = now + timedelta(seconds=delay)
                message.last_error = f"{type(exc).__name__}: {exc}"[:1000]
                failed += 1
                log.warning("email %s to %s failed (attempt %s): %s", message.id, message.to_address, message.attempts, exc)
                continue
            message.attempts += 1
            message.status, message.sent_at, message.next_attempt_at = "sent", now, None
            sent += 1
    return sent, failed


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


def units_by_id(session: Session, ids: Iterable[int]) -> dict[int, Unit]:
    """Return units keyed by id (for listing notifications)."""
    return {u.id: u for u in session.scalars(select(Unit).where(Unit.id.in_(set(ids))))}


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
