"""Case lists for pages, the API and exports: validated filters, an opaque cursor, counts.

Every list is one statement whatever the number of units or cases: the actor's scope
(``permissions.visible_units``), "late" and "escalated" (``lateness``) are SQL inside it, never
checks per row. Newest case first; the cursor carries the last case id of the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from .clock import local_date
from .cursors import check_page_size, decode_cursor, encode_cursor, fingerprint
from .definitions import Target
from .errors import FieldProblem, ValidationFailed
from .lateness import RANK_TARGET, case_escalation_rank, case_is_escalated, case_is_late
from .models import Case, Unit
from .permissions import Actor, Scope, visible_units
from .runtime import Runtime

MAX_SEARCH = 100
_ANY_WORKFLOW = {"vi": "mọi quy trình", "en": "any workflow"}


@dataclass(frozen=True)
class CaseFilter:
    """What a list is narrowed to; every value is checked by ``check_filter`` before it is used."""

    workflow: str | None = None
    state: str | None = None
    unit_id: int | None = None
    late: bool | None = None
    escalated: bool | None = None
    search: str | None = None  # part of the unit's name or official code, any case


@dataclass(frozen=True)
class CaseRow:
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
    escalated_to: Target | None  # the highest body a pending deadline has escalated to


@dataclass(frozen=True)
class CasePage:
    """A page of a case list and the cursor of the next page (None on the last)."""

    items: list[CaseRow]
    next_cursor: str | None


_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def _flag(name: str, value: object, problems: list[FieldProblem]) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    problems.append(FieldProblem(name, "not_a_boolean"))
    return None


def parse_filter(rt: Runtime, raw: Mapping[str, object] | None) -> CaseFilter:
    """Build a checked CaseFilter from query arguments (strings or typed values); ValidationFailed if bad."""
    raw = raw or {}
    problems: list[FieldProblem] = []
    known = {f.name for f in fields(CaseFilter)} | {"unit", "q"}
    for key in raw:
        if key not in known:
            problems.append(FieldProblem(key, "unknown_filter"))
    unit_raw = raw.get("unit_id", raw.get("unit"))
    unit_id: int | None = None
    if unit_raw is not None and unit_raw != "":
        if isinstance(unit_raw, int) and not isinstance(unit_raw, bool):
            unit_id = unit_raw
        elif isinstance(unit_raw, str) and unit_raw.strip().isdigit():
            unit_id = int(unit_raw.strip())
        else:
            problems.append(FieldProblem("unit", "a_unit_id"))
    texts: dict[str, str | None] = {}
    for key in ("workflow", "state", "search"):
        value = raw.get(key, raw.get("q")) if key == "search" else raw.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(FieldProblem(key, "not_text"))
            value = None
        texts[key] = value or None
    late = _flag("late", raw.get("late"), problems)
    escalated = _flag("escalated", raw.get("escalated"), problems)
    if problems:
        raise ValidationFailed(problems)
    return check_filter(
        rt, CaseFilter(texts["workflow"], texts["state"], unit_id, late, escalated, texts["search"])
    )


def check_filter(rt: Runtime, f: CaseFilter) -> CaseFilter:
    """Return ``f`` with its search text trimmed if every value makes sense; ValidationFailed otherwise."""
    problems: list[FieldProblem] = []
    definitions = rt.registry.definitions()
    if f.workflow is not None and f.workflow not in {d.name for d in definitions}:
        problems.append(FieldProblem("workflow", "unknown_workflow", {"value": repr(f.workflow)}))
    if f.state is not None:
        states = {s for d in definitions if f.workflow in (None, d.name) for s in d.spec.states}
        if f.state not in states:
            problems.append(FieldProblem("state", "unknown_state", {"value": repr(f.state), "workflow": f.workflow or _ANY_WORKFLOW}))
    if f.unit_id is not None and (not isinstance(f.unit_id, int) or isinstance(f.unit_id, bool) or f.unit_id < 1):
        problems.append(FieldProblem("unit", "a_unit_id"))
    for name in ("late", "escalated"):
        if getattr(f, name) is not None and not isinstance(getattr(f, name), bool):
            problems.append(FieldProblem(name, "not_a_boolean"))
    search = f.search
    if search is not None:
        search = search.strip() if isinstance(search, str) else None
        if search is None or not search or len(search) > MAX_SEARCH:
            problems.append(FieldProblem("search", "text_length", {"low": 1, "high": MAX_SEARCH}))
    if problems:
        raise ValidationFailed(problems)
    return CaseFilter(f.workflow, f.state, f.unit_id, f.late, f.escalated, search)


def _conditions(rt: Runtime, scope: Scope, f: CaseFilter, now: datetime) -> list[ColumnElement[bool]]:
    conditions = [scope.covers(Case.unit_id)]
    if f.workflow is not None:
        conditions.append(Case.workflow == f.workflow)
    if f.state is not None:
        conditions.append(Case.state == f.state)
    if f.unit_id is not None:
        conditions.append(Case.unit_id == f.unit_id)
    if f.late is not None:
        late = case_is_late(rt.registry, now, against=scope)
        conditions.append(late if f.late else ~late)
    if f.escalated is not None:
        escalated = case_is_escalated(rt.registry)
        conditions.append(escalated if f.escalated else ~escalated)
    if f.search is not None:
        conditions.append(
            or_(Unit.name.icontains(f.search, autoescape=True), Unit.code.icontains(f.search, autoescape=True))
        )
    return conditions


def _prepare(rt: Runtime, actor: Actor, filters: CaseFilter | Mapping[str, object] | None) -> tuple[CaseFilter, Scope, datetime]:
    f = check_filter(rt, filters) if isinstance(filters, CaseFilter) else parse_filter(rt, filters)
    now = rt.clock.now()
    return f, visible_units(actor, local_date(now)), now


def _fingerprint(actor: Actor, f: CaseFilter) -> str:
    return fingerprint(actor.username, f.workflow, f.state, f.unit_id, f.late, f.escalated, f.search)


def list_page(
    session: Session,
    rt: Runtime,
    actor: Actor,
    filters: CaseFilter | Mapping[str, object] | None = None,
    *,
    cursor: str | None = None,
    page_size: int = 50,
    language: str | None = None,
) -> CasePage:
    """Return one page of the cases the actor may see today, newest first, filtered (one statement)."""
    f, scope, now = _prepare(rt, actor, filters)
    size = check_page_size(page_size)
    after = decode_cursor(cursor, _fingerprint(actor, f))
    late = case_is_late(rt.registry, now, against=scope).label("late")
    rank = case_escalation_rank(rt.registry).label("rank")
    query: Select[tuple[Case, str, str, bool, int]] = (
        select(Case, Unit.code, Unit.name, late, rank)
        .join(Unit, Unit.id == Case.unit_id)
        .where(*_conditions(rt, scope, f, now))
        .order_by(Case.id.desc())
        .limit(size + 1)
    )
    if after is not None:
        query = query.where(Case.id < after)
    rows = session.execute(query).tuples().all()
    language = language or rt.language
    items = [
        CaseRow(
            id=c.id, unit_id=c.unit_id, unit_code=code, unit_name=name, workflow=c.workflow,
            workflow_version=c.workflow_version, state=c.state,
            state_label=rt.registry.get(c.workflow, c.workflow_version).spec.states[c.state].label.get(language),
            version=c.version, opened_at=c.opened_at, updated_at=c.updated_at, closed_at=c.closed_at,
            late=bool(is_late), escalated_to=RANK_TARGET.get(int(r or 0)),
        )
        for c, code, name, is_late, r in rows[:size]
    ]
    next_cursor = encode_cursor(items[-1].id, _fingerprint(actor, f)) if len(rows) > size else None
    return CasePage(items, next_cursor)


def count_cases(
    session: Session, rt: Runtime, actor: Actor, filters: CaseFilter | Mapping[str, object] | None = None
) -> int:
    """Return how many cases the actor may see today match ``filters`` (one statement)."""
    f, scope, now = _prepare(rt, actor, filters)
    query = select(func.count(Case.id)).select_from(Case).join(Unit, Unit.id == Case.unit_id)
    return int(session.scalar(query.where(*_conditions(rt, scope, f, now))) or 0)


__all__ = ["CaseFilter", "CasePage", "CaseRow", "check_filter", "count_cases", "list_page", "parse_filter"]
