"""The JSON API's request and response models (pydantic): the OpenAPI document is generated from them.

Instants are RFC 3339 in UTC (``2026-01-05T02:00:00Z``); due dates and validity days are local
dates (``2026-01-19``), as the province reads them. Request models forbid unknown fields, so a
misspelt field is refused (422) rather than ignored.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Strict(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class FieldError(BaseModel):
    """One field's problem: a machine-readable code and parameters, and a sentence."""

    field: str
    code: str
    params: dict[str, Any] = {}
    message: str


class ProblemModel(BaseModel):
    """RFC 9457 problem details (``application/problem+json``); ``type`` names the kind (docs/api.md)."""

    type: str = Field(examples=["urn:qmsflow:problem:stale-version"])
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None
    current_version: int | None = None
    expected_version: int | None = None
    state: str | None = None
    event: str | None = None
    limit: int | None = None
    details: dict[str, Any] | None = None


# ------------------------------------------------------------------------------------------ units


class UnitOut(BaseModel):
    """A unit as it is today (``valid_to``: the first day it no longer exists)."""

    id: int
    code: str
    name: str
    kind: str
    is_lead: bool
    valid_from: date
    valid_to: date | None
    parent_id: int | None


class UnitList(BaseModel):
    """A page of units; ``next_cursor`` (also in the ``Link`` header) fetches the next."""

    items: list[UnitOut]
    next_cursor: str | None


class UnitQuery(Strict):
    """Filters of the units list."""

    kind: str | None = None
    parent: int | None = Field(default=None, ge=1)
    cursor: str | None = Field(default=None, max_length=200)
    page_size: int = Field(default=50, ge=1, le=200)


class UnitCreate(Strict):
    """A new unit: its official code, name, kind, first day and parent."""

    code: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=255)
    kind: str = Field(min_length=1, max_length=32)
    valid_from: date | None = None
    parent_id: int | None = Field(default=None, ge=1)
    is_lead: bool = False


class UnitUpdate(Strict):
    """A change of a unit's attributes from ``on`` (default today); absent fields keep their value."""

    name: str | None = Field(default=None, min_length=1, max_length=255)
    code: str | None = Field(default=None, min_length=1, max_length=32)
    kind: str | None = Field(default=None, min_length=1, max_length=32)
    parent_id: int | None = Field(default=None, ge=1)
    on: date | None = None


# ------------------------------------------------------------------------------------------ cases


class CaseSummary(BaseModel):
    """One line of a case list."""

    id: int
    unit_id: int
    unit_code: str
    unit_name: str
    workflow: str
    workflow_version: int
    state: str
    state_label: str
    version: int
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    late: bool
    escalated_to: str | None


class CaseList(BaseModel):
    """A page of cases, newest first."""

    items: list[CaseSummary]
    next_cursor: str | None


class CaseQuery(Strict):
    """Filters of the case list (``stage`` is the case's state)."""

    unit: int | None = Field(default=None, ge=1)
    workflow: str | None = Field(default=None, max_length=64)
    stage: str | None = Field(default=None, max_length=64)
    late: bool | None = None
    escalated: bool | None = None
    cursor: str | None = Field(default=None, max_length=200)
    page_size: int = Field(default=50, ge=1, le=200)


class DeadlineOut(BaseModel):
    """A pending deadline (``due_date`` local; ``due_at`` the instant it passes)."""

    timer_id: int
    case_id: int
    unit_id: int
    name: str
    label: str
    kind: str
    state: str | None
    obligation: str | None
    due_date: date
    due_at: datetime
    working_days_left: int
    late: bool
    level: int
    escalated_to: str | None


class ObligationOut(BaseModel):
    """An open recurring obligation (yearly internal audit, management review, ...)."""

    id: int
    name: str
    cycle: int
    opened_at: datetime


class EventNow(BaseModel):
    """An event the caller may fire now; ``guard_holds`` null: only the submitted data can tell."""

    event: str
    label: str
    fields: list[str]
    guard_holds: bool | None
    reason: str | None


class CaseOut(BaseModel):
    """A case: its state and version (also the ``ETag``), data, deadlines, obligations and the caller's events."""

    id: int
    unit_id: int
    unit_code: str
    unit_name: str
    workflow: str
    workflow_version: int
    state: str
    state_label: str
    version: int
    data: dict[str, Any]
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    deadlines: list[DeadlineOut]
    obligations: list[ObligationOut]
    events: list[EventNow]


class CaseOpen(Strict):
    """Open a case of ``workflow`` for a unit, with the workflow's start fields and staged evidence."""

    unit_id: int = Field(ge=1)
    workflow: str = Field(min_length=1, max_length=64)
    data: dict[str, Any] = {}
    evidence: list[int] = Field(default=[], max_length=20)


class EventIn(Strict):
    """Fire ``event``; ``expected_version`` (or the ``If-Match`` header) makes it conditional."""

    event: str = Field(min_length=1, max_length=64)
    comment: str | None = Field(default=None, max_length=2000)
    data: dict[str, Any] = {}
    evidence: list[int] = Field(default=[], max_length=20)
    expected_version: int | None = Field(default=None, ge=1)


class AdvanceOut(BaseModel):
    """What the event did, and the case after it."""

    event: str
    from_state: str
    to_state: str
    case: CaseOut


class HistoryEntryOut(BaseModel):
    """One history row, oldest first."""

    seq: int
    at: datetime
    kind: str
    actor: str
    event: str | None
    from_state: str | None
    to_state: str | None
    data: dict[str, Any]
    evidence: list[dict[str, Any]]
    comment: str | None


class HistoryList(BaseModel):
    """A page of a case's history."""

    items: list[HistoryEntryOut]
    next_cursor: str | None


class PageQuery(Strict):
    """A cursor and a page size."""

    cursor: str | None = Field(default=None, max_length=200)
    page_size: int = Field(default=50, ge=1, le=200)


class TimerQuery(PageQuery):
    """Pending deadlines whose next step comes before ``due_before`` (RFC 3339 with offset)."""

    due_before: datetime | None = None


class DeadlineList(BaseModel):
    """A page of pending deadlines, next step first."""

    items: list[DeadlineOut]
    next_cursor: str | None


# ---------------------------------------------------------------------------------------- evidence


class UploadForm(BaseModel):
    """A multipart upload: one file (PDF, JPEG or PNG)."""

    file: bytes = Field(json_schema_extra={"format": "binary"})


class UploadOut(BaseModel):
    """A staged upload: attach it by ``id`` to an event within ``expires_at``."""

    id: int
    name: str
    content_type: str
    size: int
    sha256: str
    expires_at: datetime


# ----------------------------------------------------------------------------------- notifications


class NotificationOut(BaseModel):
    """One of my notifications, in my language."""

    id: int
    case_id: int
    kind: str
    level: int
    subject: str
    body: str
    created_at: datetime
    read_at: datetime | None


class NotificationList(BaseModel):
    """A page of my notifications, newest first, and how many are unread in all."""

    items: list[NotificationOut]
    unread: int
    next_cursor: str | None


class NotificationQuery(PageQuery):
    """Only unread ones, or all."""

    unread: bool = False


class MarkRead(Strict):
    """The notifications to mark read (ids), or all of them."""

    ids: list[int] = Field(default=[], max_length=500)
    all: bool = False


class Marked(BaseModel):
    """How many were unread before."""

    marked: int


# ---------------------------------------------------------------------------------------- summary


class SummaryQuery(Strict):
    """The day the summary is as of: ``YYYY-MM-DD``, today or before (default today)."""

    as_of: date | None = Field(default=None, examples=["2025-06-30"])

    @field_validator("as_of", mode="before")
    @classmethod
    def _iso_day(cls, value: Any) -> Any:
        # pydantic would also take a Unix timestamp or a datetime; the contract is the calendar day only
        if value is not None and not (isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-"):
            raise ValueError("give a day as YYYY-MM-DD")
        return value


class FigureOut(BaseModel):
    """One figure: what it counts (``key``), the count, and the units-list filter that lists exactly those units."""

    key: str
    count: int
    filter: dict[str, str]


class SummaryOut(BaseModel):
    """The dashboard's figures for my scope as they stood at the end of ``as_of`` (docs/api.md, docs/web.md)."""

    as_of: date
    units: FigureOut
    by_stage: list[FigureOut]
    ever_announced: FigureOut
    late: FigureOut
    escalation_levels: list[FigureOut] = Field(description="key: the rank reached, at least (2 supervisor, 3 lead, 4 provincial PC)")
    open_ca: FigureOut
    by_kind: dict[str, list[FigureOut]] = Field(description="unit kind -> figures by stage")
    by_parent: dict[str, list[FigureOut]] = Field(description="parent unit id -> figures by stage")
    parent_names: dict[str, str] = Field(description="parent unit id -> its name on as_of")
    due_within: list[FigureOut] = Field(description="key: 7, 14 or 30 calendar days")
    announced_by_month: list[FigureOut] = Field(description="the 24 months up to as_of, oldest first; key: YYYY-MM")
