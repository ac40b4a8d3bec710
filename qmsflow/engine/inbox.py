"""A person's in-app inbox: items read or unread, the unread count, marking read.

The inbox joins the scope of the day like every list: a notification about a case the person may
no longer see (the unit moved to another supervisor) is not shown, and cannot be marked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from .clock import local_date
from .cursors import check_page_size, decode_cursor, encode_cursor, fingerprint
from .errors import FieldProblem, NotFound, ValidationFailed
from .messages import render_notification
from .models import Case, InboxItem, Notification, User
from .permissions import Actor, visible_units
from .runtime import Runtime

MAX_MARK = 500


@dataclass(frozen=True)
class InboxEntry:
    """One notification as its recipient sees it."""

    id: int
    notification_id: int
    case_id: int
    kind: str  # reminder | escalation
    level: int
    subject: str
    body: str
    created_at: datetime
    read_at: datetime | None

    @property
    def unread(self) -> bool:
        """Whether the recipient has not read it yet."""
        return self.read_at is None


@dataclass(frozen=True)
class InboxPage:
    """A page of the inbox, the count of unread items in the whole inbox, and the next cursor."""

    items: list[InboxEntry]
    unread: int
    next_cursor: str | None


def _mine(rt: Runtime, actor: Actor) -> list[ColumnElement[bool]]:
    """SQL over InboxItem (joined to its notification's case): the actor's items within today's scope."""
    user_id = select(User.id).where(User.username == actor.username, User.active.is_(True)).scalar_subquery()
    return [InboxItem.user_id == user_id, visible_units(actor, local_date(rt.clock.now())).covers(Case.unit_id)]


def inbox_page(
    session: Session, rt: Runtime, actor: Actor, *, unread_only: bool = False, cursor: str | None = None, page_size: int = 50
) -> InboxPage:
    """Return a page of the actor's inbox, newest first, with the unread count (two statements).

    Each item's subject and body are in the owner's language (``users.language``).
    """
    size = check_page_size(page_size)
    if not isinstance(unread_only, bool):
        raise ValidationFailed([FieldProblem("unread_only", "not_a_boolean")])
    after = decode_cursor(cursor, fingerprint("inbox", actor.username, unread_only))
    mine = _mine(rt, actor)
    query = (
        select(InboxItem, Notification, User.language)
        .join(Notification, Notification.id == InboxItem.notification_id)
        .join(Case, Case.id == Notification.case_id)
        .join(User, User.id == InboxItem.user_id)
        .where(*mine)
        .order_by(InboxItem.id.desc())
        .limit(size + 1)
    )
    if unread_only:
        query = query.where(InboxItem.read_at.is_(None))
    if after is not None:
        query = query.where(InboxItem.id < after)
    rows = session.execute(query).tuples().all()
    items = [
        InboxEntry(item.id, n.id, n.case_id, n.kind, n.level, *render_notification(n, language), n.created_at, item.read_at)
        for item, n, language in rows[:size]
    ]
    unread = session.scalar(
        select(func.count(InboxItem.id))
        .join(Notification, Notification.id == InboxItem.notification_id)
        .join(Case, Case.id == Notification.case_id)
        .where(*mine, InboxItem.read_at.is_(None))
    )
    next_cursor = encode_cursor(items[-1].id, fingerprint("inbox", actor.username, unread_only)) if len(rows) > size else None
    return InboxPage(items, int(unread or 0), next_cursor)


def mark_read(session: Session, rt: Runtime, actor: Actor, item_ids: Iterable[int]) -> int:
    """Mark the actor's items read; return how many were unread. All or nothing: NotFound for one not theirs."""
    ids = list(item_ids)
    if not ids or len(ids) > MAX_MARK or any(not isinstance(i, int) or isinstance(i, bool) or i < 1 for i in ids):
        raise ValidationFailed([FieldProblem("items", "item_ids", {"n": MAX_MARK})])
    wanted = set(ids)
    found = set(
        session.scalars(
            select(InboxItem.id)
            .join(Notification, Notification.id == InboxItem.notification_id)
            .join(Case, Case.id == Notification.case_id)
            .where(InboxItem.id.in_(wanted), *_mine(rt, actor))
        )
    )
    missing = sorted(wanted - found)
    if missing:
        raise NotFound("inbox item", missing[0])
    return _mark(session, rt, InboxItem.id.in_(found))


def mark_all_read(session: Session, rt: Runtime, actor: Actor) -> int:
    """Mark every unread item of the actor's inbox (within today's scope) read; return how many."""
    mine = (
        select(InboxItem.id)
        .join(Notification, Notification.id == InboxItem.notification_id)
        .join(Case, Case.id == Notification.case_id)
        .where(*_mine(rt, actor))
    )
    # correlate(None): the subquery reads inbox_items itself, not the row being updated
    return _mark(session, rt, InboxItem.id.in_(mine.correlate(None).scalar_subquery()))


def _mark(session: Session, rt: Runtime, which: ColumnElement[bool]) -> int:
    # One UPDATE; synchronize_session="fetch" sets read_at on any InboxItem the session has loaded,
    # and a rollback of the caller's transaction undoes both.
    result = session.execute(
        update(InboxItem).where(which, InboxItem.read_at.is_(None)).values(read_at=rt.clock.now()),
        execution_options={"synchronize_session": "fetch"},
    )
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = ["InboxEntry", "InboxPage", "inbox_page", "mark_all_read", "mark_read"]
