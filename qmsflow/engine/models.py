"""The persisted model: units and their effective-dated parents, people, cases, history, timers.

SQLAlchemy 2.0 declarative mapping. Instants are stored as naive UTC and read back as aware UTC
(``UTCDateTime``) so SQLite and PostgreSQL hand the engine the same values; schema changes go through
the Alembic migrations in ``qmsflow/migrations``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ColumnElement,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, SessionTransaction, mapped_column, relationship
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonData = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime, stored naive-UTC so both backends round-trip it identically."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints predictably."""

    metadata = MetaData(naming_convention=NAMING)


def keep_in_step(instance: Base, values: Mapping[str, Any]) -> None:
    """Set a loaded row's attributes to what a Core statement just wrote, without marking them changed.

    No flush then writes them again: a flush cost as much as the rest of a transition (bench/RESULTS.md).
    The session does not know of such a change, so a savepoint rollback would not undo it: every
    session qmsflow makes expires its objects when a savepoint rolls back (``expire_after_savepoint_rollback``).
    """
    for name, value in values.items():
        set_committed_value(instance, name, value)


def expire_after_savepoint_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    """After a savepoint rolls back, make every loaded object read its row again (a session event).

    SQLAlchemy expires only the objects it saw change inside the savepoint; values set with
    ``keep_in_step`` would survive and show the rolled-back state. Expiring everything is safe here:
    ``begin_nested`` flushed before the savepoint began, so nothing unwritten from before it is lost,
    and objects added inside it are expunged by SQLAlchemy itself.
    """
    if previous_transaction.nested:
        session.expire_all()


class Unit(Base):
    """A public body in scope: an identity (``id``) that lives from ``valid_from`` to ``valid_to``.

    Its name, official code, kind and lead flag are effective-dated attributes in ``unit_versions``,
    its parent in ``unit_parents``: a rename or a move keeps the unit and its cases. ``code``, ``name``,
    ``kind`` and ``is_lead`` read the *current* version, the last one (whose end is the unit's end),
    on an instance and in SQL alike; a question about a given day asks ``version_on`` or the
    dated look-ups in qmsflow/engine/units.py. See docs/architecture.md, "Units as identities".
    """

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(primary_key=True)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)  # exclusive; None while the unit exists

    contacts: Mapped[list[Contact]] = relationship(back_populates="unit", order_by="Contact.role")
    versions: Mapped[list[UnitVersion]] = relationship(
        order_by="UnitVersion.valid_from", viewonly=True, lazy="select"
    )
    # Loaded in the same statement as the unit, so reading a name costs no extra query. An inner
    # join: every unit has a version that ends when it ends (the services and migration 0007 keep it
    # so), and PostgreSQL refuses FOR UPDATE on the nullable side of an outer join.
    current: Mapped[UnitVersion] = relationship(
        primaryjoin="and_(UnitVersion.unit_id == Unit.id, UnitVersion.valid_to.is_not_distinct_from(Unit.valid_to))",
        viewonly=True, lazy="joined", innerjoin=True, uselist=False,
    )

    @hybrid_property
    def code(self) -> str:
        """The official code of the current version."""
        return self.current.code

    @code.inplace.expression
    @classmethod
    def _code_expression(cls) -> ColumnElement[str]:
        return _current_attribute(cls, UnitVersion.code)

    @hybrid_property
    def name(self) -> str:
        """The name of the current version."""
        return self.current.name

    @name.inplace.expression
    @classmethod
    def _name_expression(cls) -> ColumnElement[str]:
        return _current_attribute(cls, UnitVersion.name)

    @hybrid_property
    def kind(self) -> str:
        """The kind (a ``units.UnitKind`` value) of the current version."""
        return self.current.kind

    @kind.inplace.expression
    @classmethod
    def _kind_expression(cls) -> ColumnElement[str]:
        return _current_attribute(cls, UnitVersion.kind)

    @hybrid_property
    def is_lead(self) -> bool:
        """Whether the current version is the lead unit (the Dept of S&T)."""
        return self.current.is_lead

    @is_lead.inplace.expression
    @classmethod
    def _is_lead_expression(cls) -> ColumnElement[bool]:
        return _current_attribute(cls, UnitVersion.is_lead)

    def valid_on(self, day: date) -> bool:
        """Return whether the unit exists on ``day``."""
        return self.valid_from <= day and (self.valid_to is None or day < self.valid_to)

    def version_on(self, day: date) -> UnitVersion | None:
        """Return the version valid on ``day`` (loads ``versions`` once), or None outside the unit's life."""
        return next((v for v in self.versions if v.valid_on(day)), None)

    def __repr__(self) -> str:
        return f"<Unit {self.id}>"


def _current_attribute(unit: Any, column: Any) -> ColumnElement[Any]:
    """SQL: the attribute of the unit's current version, correlated to ``unit`` (a class or an alias)."""
    return (
        select(column)
        .where(UnitVersion.unit_id == unit.id, UnitVersion.valid_to.is_not_distinct_from(unit.valid_to))
        .correlate(unit)
        .scalar_subquery()
    )


class UnitVersion(Base):
    """A unit's name, official code, kind and lead flag over one period ``[valid_from, valid_to)``.

    The database refuses overlapping versions of one unit, one code on two units in overlapping
    periods, and two lead units on one day (migration 0007: ``EXCLUDE USING gist`` on PostgreSQL,
    triggers on SQLite); a refusal reaches the caller as ``PeriodOverlap``.
    """

    __tablename__ = "unit_versions"
    __table_args__ = (
        CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="period"),
        Index("ix_unit_versions_unit_id_valid_from", "unit_id", "valid_from"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)  # exclusive; None while this version holds
    code: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    is_lead: Mapped[bool] = mapped_column(Boolean, default=False)
    # name and code folded (qmsflow/engine/unitsearch.py, 0009), written by its hook on every ORM write
    search_folded: Mapped[str] = mapped_column(String(300), default="", server_default="")

    def valid_on(self, day: date) -> bool:
        """Return whether this version holds on ``day``."""
        return self.valid_from <= day and (self.valid_to is None or day < self.valid_to)

    def __repr__(self) -> str:
        return f"<UnitVersion {self.unit_id} {self.code} {self.name!r} {self.valid_from}..{self.valid_to}>"


# Code-point order on PostgreSQL, so a prefix is an index range whatever the database's collation.
_Word = String(64).with_variant(String(64, collation="C"), "postgresql")


class UnitSearchWord(Base):
    """One word of a unit version's name or code, folded and marked, for prefix search (0009).

    Written by qmsflow/engine/unitsearch.py whenever a version is written; searched by index range.
    """

    __tablename__ = "unit_search_words"
    __table_args__ = (
        Index("ix_unit_search_words_folded", "folded", "unit_version_id"),
        Index("ix_unit_search_words_marked", "marked_base", "tone", "unit_version_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_version_id: Mapped[int] = mapped_column(ForeignKey("unit_versions.id", ondelete="CASCADE"), index=True)
    folded: Mapped[str] = mapped_column(_Word)
    marked_base: Mapped[str] = mapped_column(_Word)
    tone: Mapped[str] = mapped_column(String(8), default="")


class UnitSuccession(Base):
    """A unit that took over from another on ``effective`` (a merger, a split, a renamed body).

    The successor's officers read the predecessor's cases (qmsflow/engine/permissions.py).
    """

    __tablename__ = "unit_successions"
    __table_args__ = (
        UniqueConstraint("predecessor_id", "successor_id"),
        CheckConstraint("predecessor_id <> successor_id", name="distinct_units"),
        Index("ix_unit_successions_successor_id", "successor_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    predecessor_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    successor_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    effective: Mapped[date] = mapped_column(Date)  # the successor's first day in charge


class UnitParent(Base):
    """An effective-dated link from a unit to the body that supervises it.

    Periods of one unit's links never overlap (migration 0007, enforced by the database).
    """

    __tablename__ = "unit_parents"
    __table_args__ = (CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)  # exclusive


class Contact(Base):
    """A named person a unit designates: its head or its ISO officer."""

    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("unit_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    role: Mapped[str] = mapped_column(String(16))  # head | iso_officer
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(32))

    unit: Mapped[Unit] = relationship(back_populates="contacts")


class User(Base):
    """Someone who signs in: a role, and for scoped roles the unit the scope hangs from."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # what the person reads notifications, digests and messages in: vi | en (qmsflow/engine/language.py)
    language: Mapped[str] = mapped_column(String(8), default="vi", server_default="vi")
    # Raised by a deactivation or a password reset or change: a web session signed in under an
    # older epoch is over (0008). A one-time password issued by an administrator sets the flag.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    unit: Mapped[Unit | None] = relationship()


class SignInFailure(Base):
    """One failed sign-in, by the username typed (known or not) and the client address (0008).

    Counted by qmsflow/engine/signin.py within a window, in the database, so the limit holds across
    every web process; a successful sign-in or an administrator's unlock clears a username's rows.
    """

    __tablename__ = "sign_in_failures"
    __table_args__ = (
        Index("ix_sign_in_failures_username_at", "username", "at"),
        Index("ix_sign_in_failures_client_address_at", "client_address", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    username: Mapped[str] = mapped_column(String(64))
    client_address: Mapped[str] = mapped_column(String(64))


class SignInLock(Base):
    """A username locked after too many failures, until ``locked_until`` or an administrator's unlock (0008)."""

    __tablename__ = "sign_in_locks"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    locked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime)


class Case(Base):
    """One running instance of a workflow definition for one unit."""

    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_workflow_state", "workflow", "state"),
        # dashboard: open cases by stage, counted from the index alone (0002)
        Index(
            "ix_cases_open_stage", "workflow", "workflow_version", "state",
            sqlite_where=text("closed_at IS NULL"), postgresql_where=text("closed_at IS NULL"),
        ),
        # the definition's open_cases rule: two open cases of one unit never share a key (0003)
        Index(
            "uq_cases_open_key", "unit_id", "open_key", unique=True,
            sqlite_where=text("closed_at IS NULL AND open_key IS NOT NULL"),
            postgresql_where=text("closed_at IS NULL AND open_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    workflow: Mapped[str] = mapped_column(String(64))
    workflow_version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    data: Mapped[dict[str, Any]] = mapped_column(JsonData, default=dict)
    parent_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    history_head: Mapped[str] = mapped_column(String(64), default="")
    history_length: Mapped[int] = mapped_column(Integer, default=0)
    # Definition.open_key of the opening data; None where the workflow lets a unit hold many open cases.
    open_key: Mapped[str | None] = mapped_column(String(255))

    unit: Mapped[Unit] = relationship()


class HistoryEntry(Base):
    """One append-only, HMAC-chained record of something that happened to a case."""

    __tablename__ = "history"
    # (event, at): the announcements of a period, for the province's "announced by month" (0017)
    __table_args__ = (UniqueConstraint("case_id", "seq"), Index("ix_history_event_at", "event", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    event: Mapped[str | None] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(64))
    to_state: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JsonData, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # The key that signed the row and the canonical form it signed (history.canonical_bytes):
    # rows written before keys had ids are form 1 under key "1" (migration 0004).
    key_id: Mapped[str] = mapped_column(String(32), server_default="1")
    form: Mapped[int] = mapped_column(Integer, server_default="1")


class HistoryKeyRecord(Base):
    """A history key as the database knows it: its id, a check value (never the key) and its life."""

    __tablename__ = "history_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    check_value: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Obligation(Base):
    """A duty of a case not tied to its state (yearly audit, 3-month legal update), open until fulfilled."""

    __tablename__ = "obligations"
    __table_args__ = (Index("ix_obligations_case_status", "case_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    name: Mapped[str] = mapped_column(String(64))
    cycle: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16))  # open | fulfilled | cancelled
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Timer(Base):
    """A planned deadline with its reminders and escalation ladder; the sweep walks its steps.

    ``next_at`` is the instant of the next unfired step (reminder, due, ladder level) and
    ``next_step`` its index in the plan the definition gives; the sweep reads only pending rows
    whose ``next_at`` has passed, through the (status, next_at) index.
    """

    __tablename__ = "timers"
    __table_args__ = (
        Index("ix_timers_status_next_at", "status", "next_at"),
        Index("ix_timers_case_status", "case_id", "status"),
        Index("ix_timers_status_due_date", "status", "due_date"),  # dashboard: deadlines, overdue (0002)
        Index("ix_timers_status_level", "status", "level"),  # dashboard: open escalations (0002)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # state | obligation
    state: Mapped[str | None] = mapped_column(String(64))
    obligation_id: Mapped[int | None] = mapped_column(ForeignKey("obligations.id"))
    start_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # pending | done | cancelled
    level: Mapped[int] = mapped_column(Integer, default=0)
    next_step: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TimerFiring(Base):
    """One step of one timer that happened (or was skipped); unique so a step fires at most once."""

    __tablename__ = "timer_firings"
    __table_args__ = (UniqueConstraint("timer_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    timer_id: Mapped[int] = mapped_column(ForeignKey("timers.id"))
    step: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # reminder | due | escalation
    level: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(16))  # fired | skipped
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_by: Mapped[str] = mapped_column(String(128), default="")


class Notification(Base):
    """The outbox: written in the same transaction as the reminder or escalation that caused it.

    Who receives it is resolved when it is routed (from the unit hierarchy, users and contacts as
    they are then), not when it is written. What it says is its ``kind`` and ``params``, rendered in
    each recipient's language when it is routed, listed or digested (engine/messages.py);
    ``subject`` and ``body`` keep the words in the installation's language, for the log and for
    rows written before ``params`` existed (migration 0007), which have no params.
    """

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    timer_id: Mapped[int | None] = mapped_column(ForeignKey("timers.id"))
    kind: Mapped[str] = mapped_column(String(16))  # reminder | escalation
    level: Mapped[int] = mapped_column(Integer, default=0)
    target: Mapped[str] = mapped_column(String(32))  # unit | unit_head | supervisor | lead | provincial_pc
    target_unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any] | None] = mapped_column(JsonData)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # pending | routed
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EmailMessage(Base):
    """One email to one address, sent at least once under a stable Message-ID, retried with backoff."""

    __tablename__ = "email_messages"
    __table_args__ = (Index("ix_email_messages_status_next_attempt_at", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notifications.id"))
    kind: Mapped[str] = mapped_column(String(16))  # notification | digest
    to_address: Mapped[str] = mapped_column(String(255))
    to_name: Mapped[str] = mapped_column(String(255), default="")
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | rejected
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A sender's lease: it sends outside any transaction until then; after it, another sender may retry (0003).
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class InboxItem(Base):
    """A notification as one person sees it in the app."""

    __tablename__ = "inbox_items"
    __table_args__ = (UniqueConstraint("notification_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    digested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Meta(Base):
    """Small key/value facts about the installation (e.g. the calendar overrides fingerprint)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class CalendarDay(Base):
    """One day the ``holidays`` package does not know: an extra day off or a make-up working day.

    These rows are the installation's one calendar authority (qmsflow/engine/calendar_store.py); the
    calendar file only seeds and imports them.
    """

    __tablename__ = "calendar_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    working: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str] = mapped_column(String(200), default="")


class EvidenceUpload(Base):
    """An evidence file's upload: staged by its uploader, then attached to one case (or purged on expiry).

    The file itself is stored once under ``sha256`` (qmsflow/engine/evidence.py); this row is what a
    download goes by, so a hash alone never opens a file.
    """

    __tablename__ = "evidence_uploads"
    __table_args__ = (Index("ix_evidence_uploads_case_id_expires_at", "case_id", "expires_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    uploader: Mapped[str] = mapped_column(String(64))  # a username, as history rows name actors
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    staged_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))  # None while staged
    attached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReorganisationOperation(Base):
    """One applied operation of a reorganisation file, by its key, with the hash of what it said (0013)."""

    __tablename__ = "reorganisation_operations"

    id: Mapped[int] = mapped_column(primary_key=True)
    op_key: Mapped[str] = mapped_column(String(128), unique=True)
    op_hash: Mapped[str] = mapped_column(String(64))
    operation: Mapped[dict[str, Any]] = mapped_column(JsonData)
    effective: Mapped[date] = mapped_column(Date)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    backdated: Mapped[bool] = mapped_column(Boolean, default=False)
class Event(Base):
    """One occurrence integrators hear of (qmsflow/engine/events.py): written in the transaction of what it reports.

    ``txid`` is the writing transaction's id on PostgreSQL (a server default, migration 0011), so the
    feed can hold back rows that a transaction still open might precede; SQLite leaves it empty.
    ``dispatched_at`` is set once the webhook dispatcher has fanned the event out to subscriptions.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index(
            "ix_events_undispatched", "id",
            sqlite_where=text("dispatched_at IS NULL"), postgresql_where=text("dispatched_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    data: Mapped[dict[str, Any]] = mapped_column(JsonData, default=dict)
    txid: Mapped[int | None] = mapped_column(BigInteger)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookSubscription(Base):
    """A URL that hears of some event types, seeing them as one user would (qmsflow/engine/webhooks.py)."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(JsonData)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # whsec_<base64>: the HMAC key of the signatures; the previous one also signs until previous_until
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # active | disabled | unsubscribed
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class WebhookDelivery(Base):
    """One event for one subscription: its signed body, sent at least once, retried with backoff."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    message_id: Mapped[str] = mapped_column(String(64), unique=True)  # the webhook-id header, the same on every try
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed | gone
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)


class WebhookAttempt(Base):
    """One try of a delivery: when, the HTTP status (None: no answer) and the error."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class AdminLogEntry(Base):
    """One append-only, HMAC-chained record of an administrative change (qmsflow/engine/adminlog.py)."""

    __tablename__ = "admin_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))  # e.g. user.create, unit.set_parent, calendar.apply
    object_kind: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JsonData)
    after: Mapped[dict[str, Any] | None] = mapped_column(JsonData)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AdminLogHead(Base):
    """The admin log's chain head and length, one row for the installation, so a deleted last row is noticed."""

    __tablename__ = "admin_log_head"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    length: Mapped[int] = mapped_column(Integer)
    head: Mapped[str] = mapped_column(String(64))


class ApiToken(Base):
    """A bearer token for the JSON API, stored as its SHA-256 only (0010, qmsflow/engine/tokens.py).

    It acts as its user, with the user's role and scope; it stops working when revoked, when it
    expires, or when the user is deactivated. ``prefix`` is the token's first characters, so a list
    can name a token without holding it.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class IdempotencyKey(Base):
    """One ``Idempotency-Key`` of one token: the request it was first sent with and, once done, the answer (0010).

    ``state`` is ``running`` from the first request until its answer is stored (``done``); a running
    row whose lease has passed was left by a process that died and may be taken over.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("token_id", "key"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # running | done
    status: Mapped[int | None] = mapped_column(Integer)
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiRateWindow(Base):
    """How many requests one token made in one minute (0010): the rate limit holds across processes."""

    __tablename__ = "api_rate_windows"

    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


__all__ = [
    "expire_after_savepoint_rollback",
    "keep_in_step",
    "AdminLogEntry",
    "AdminLogHead",
    "ApiRateWindow",
    "ApiToken",
    "Base",
    "CalendarDay",
    "Case",
    "Contact",
    "EmailMessage",
    "Event",
    "EvidenceUpload",
    "HistoryEntry",
    "HistoryKeyRecord",
    "IdempotencyKey",
    "InboxItem",
    "Meta",
    "Notification",
    "Obligation",
    "ReorganisationOperation",
    "SignInFailure",
    "SignInLock",
    "Timer",
    "TimerFiring",
    "Unit",
    "UnitParent",
    "UnitSearchWord",
    "UnitSuccession",
    "UnitVersion",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
]
