"""Units by internal id, for the JSON API: one unit, or a page of the units an actor sees today.

Units are referred to by id, never by official code (codes are reused across periods). Scope is SQL
(``permissions.visible_units``), so a page is one statement. The folded-name search (``q``) is
qmsflow/engine/unitsearch.py's, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from .clock import local_date
from .cursors import check_page_size, decode_cursor, encode_cursor, fingerprint
from .errors import FieldProblem, NotFound, ValidationFailed
from .models import Unit, UnitParent
from .permissions import Actor, visible_units
from .runtime import Runtime
from .units import UnitKind


@dataclass(frozen=True)
class UnitRow:
    """A unit as it is today."""

    id: int
    code: str
    name: str
    kind: str
    is_lead: bool
    valid_from: date
    valid_to: date | None
    parent_id: int | None


def _parent_today(today: date) -> object:
    return and_(
        UnitParent.unit_id == Unit.id, UnitParent.valid_from <= today,
        (UnitParent.valid_to.is_(None)) | (UnitParent.valid_to > today),
    )


def _rows(session: Session, rt: Runtime, actor: Actor, *conditions: object, limit: int) -> list[UnitRow]:
    today = local_date(rt.clock.now())
    query = (
        select(Unit, UnitParent.parent_id)
        .outerjoin(UnitParent, _parent_today(today))  # type: ignore[arg-type]
        .where(visible_units(actor, today).covers(Unit.id), *conditions)  # type: ignore[arg-type]
        .order_by(Unit.id)
        .limit(limit)
    )
    return [
        UnitRow(u.id, u.code, u.name, u.kind, u.is_lead, u.valid_from, u.valid_to, parent)
        for u, parent in session.execute(query).tuples()
    ]


def get_unit(session: Session, rt: Runtime, actor: Actor, unit_id: int) -> UnitRow:
    """Return the unit as it is today if the actor sees it; NotFound otherwise."""
    found = _rows(session, rt, actor, Unit.id == unit_id, limit=1)
    if not found:
        raise NotFound("unit", unit_id)
    return found[0]


def units_page(
    session: Session, rt: Runtime, actor: Actor, *, kind: str | None = None, parent: int | None = None,
    cursor: str | None = None, page_size: int = 50,
) -> tuple[list[UnitRow], str | None]:
    """Return a page of the units the actor sees, by id, and the next page's cursor (None on the last)."""
    size = check_page_size(page_size)
    if kind is not None and kind not in {k.value for k in UnitKind}:
        raise ValidationFailed([FieldProblem("kind", "not_a_choice", {"choices": [k.value for k in UnitKind]})])
    marker = fingerprint("units", actor.username, kind, parent)
    after = decode_cursor(cursor, marker)
    conditions: list[object] = []
    if kind is not None:
        conditions.append(Unit.kind == kind)
    if parent is not None:
        conditions.append(UnitParent.parent_id == parent)
    if after is not None:
        conditions.append(Unit.id > after)
    rows = _rows(session, rt, actor, *conditions, limit=size + 1)
    next_cursor = encode_cursor(rows[size - 1].id, marker) if len(rows) > size else None
    return rows[:size], next_cursor


__all__ = ["UnitRow", "get_unit", "units_page"]
