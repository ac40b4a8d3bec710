"""What the pages that open cases need: the units that have no open case of a workflow yet.

Opening itself is ``cases.open_case``; the rule of who may open is ``permissions.may_open``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from .clock import local_date
from .cursors import check_page_size
from .errors import FieldProblem, ValidationFailed
from .models import Case, Unit
from .permissions import Actor, visible_units
from .runtime import Runtime

MAX_SEARCH = 100


@dataclass(frozen=True)
class UnitChoice:
    """A unit a case may be opened for."""

    id: int
    code: str
    name: str


def units_without_open_case(
    session: Session, rt: Runtime, actor: Actor, workflow: str, *, search: str | None = None, limit: int = 50
) -> list[UnitChoice]:
    """Return up to ``limit`` units the actor sees today with no open ``workflow`` case, by code (one statement)."""
    size = check_page_size(limit)
    if workflow not in {d.name for d in rt.registry.definitions()}:
        raise ValidationFailed([FieldProblem("workflow", "unknown_workflow", {"value": repr(workflow)})])
    today = local_date(rt.clock.now())
    query = (
        select(Unit.id, Unit.code, Unit.name)
        .where(
            Unit.valid_from <= today,
            or_(Unit.valid_to.is_(None), Unit.valid_to > today),
            visible_units(actor, today).covers(Unit.id),
            ~exists().where(Case.unit_id == Unit.id, Case.workflow == workflow, Case.closed_at.is_(None)),
        )
        .order_by(Unit.code)
        .limit(size)
    )
    if search is not None:
        text = search.strip()
        if not text or len(text) > MAX_SEARCH:
            raise ValidationFailed([FieldProblem("search", "text_length", {"low": 1, "high": MAX_SEARCH})])
        query = query.where(or_(Unit.name.icontains(text, autoescape=True), Unit.code.icontains(text, autoescape=True)))
    return [UnitChoice(i, c, n) for i, c, n in session.execute(query).tuples()]


__all__ = ["UnitChoice", "units_without_open_case"]
