"""Units by internal id: list (kind, parent), read, create, change. Over qmsflow/engine/units.py and unitpages.py."""

from __future__ import annotations

from typing import Any

from flask import request

from ...engine.clock import local_date
from ...engine.errors import FieldProblem, NotFound, ValidationFailed
from ...engine.models import Unit
from ...engine.permissions import AdminArea, require_admin
from ...engine.unitpages import UnitRow, get_unit, units_page
from ...engine.units import change_unit, create_unit
from ..context import services
from .core import answer, bp, ctx, idempotent, next_link, operation
from .schemas import UnitCreate, UnitList, UnitOut, UnitQuery, UnitUpdate


def unit_out(row: UnitRow) -> UnitOut:
    """A unit as the API shows it."""
    return UnitOut(id=row.id, code=row.code, name=row.name, kind=row.kind, is_lead=row.is_lead, valid_from=row.valid_from,
                   valid_to=row.valid_to, parent_id=row.parent_id)


@bp.get("/units")
@operation(query=UnitQuery, ok={200: UnitList}, tag="units")
def list_units(query: UnitQuery) -> Any:
    """The units I may see today, by id; filtered by kind and parent unit id."""
    svc, c = services(), ctx()
    with svc.db.read() as session:
        rows, cursor = units_page(session, svc.rt, c.actor, kind=query.kind, parent=query.parent, cursor=query.cursor,
                                  page_size=query.page_size)
    return answer(UnitList(items=[unit_out(r) for r in rows], next_cursor=cursor), headers=next_link(cursor))


@bp.get("/units/<int:unit_id>")
@operation(ok={200: UnitOut}, problems=(404,), tag="units")
def read_unit(unit_id: int) -> Any:
    """A unit as it is today."""
    svc, c = services(), ctx()
    with svc.db.read() as session:
        row = get_unit(session, svc.rt, c.actor, unit_id)
    return answer(unit_out(row))


@bp.post("/units")
@operation(body=UnitCreate, ok={201: UnitOut}, problems=(403, 404, 409, 415, 422), tag="units")
@idempotent
def create(body: UnitCreate) -> Any:
    """Register a unit (administrators and the lead unit)."""
    svc, c = services(), ctx()
    require_admin(c.actor, AdminArea.UNITS)
    today = local_date(svc.rt.clock.now())
    with svc.db.write() as session:
        parent = None
        if body.parent_id is not None:
            parent = session.get(Unit, body.parent_id)
            if parent is None or not parent.valid_on(body.valid_from or today):
                raise ValidationFailed([FieldProblem("parent_id", "no_unit_on", {"unit": body.parent_id, "day": body.valid_from or today})])
        unit = create_unit(session, code=body.code, name=body.name, kind=body.kind, valid_from=body.valid_from or today,
                           parent=parent, is_lead=body.is_lead, rt=svc.rt, actor=c.actor)
        row = get_unit(session, svc.rt, c.actor, unit.id)
    return answer(unit_out(row), 201, {"Location": f"{request.script_root}/api/v1/units/{row.id}"})


@bp.patch("/units/<int:unit_id>")
@operation(body=UnitUpdate, ok={200: UnitOut}, problems=(403, 404, 409, 415, 422), tag="units")
def update(unit_id: int, body: UnitUpdate) -> Any:
    """Change a unit's name, code, kind or parent from a day (default today); the unit keeps its id."""
    svc, c = services(), ctx()
    with svc.db.write() as session:
        get_unit(session, svc.rt, c.actor, unit_id)  # not visible: 404 before 403
        require_admin(c.actor, AdminArea.UNITS)
        given = body.model_dump(exclude_unset=True)
        kwargs: dict[str, Any] = {k: given[k] for k in ("name", "code", "kind") if k in given}
        if "parent_id" in given:
            kwargs["parent_id"] = given["parent_id"]
        try:
            change_unit(session, svc.rt, c.actor, unit_id, on=body.on or local_date(svc.rt.clock.now()), **kwargs)
        except NotFound as exc:
            if exc.kind != "unit version":
                raise
            raise ValidationFailed([FieldProblem("on", "unit_absent_on", {"day": body.on})]) from None
        row = get_unit(session, svc.rt, c.actor, unit_id)
    return answer(unit_out(row))


__all__ = ["unit_out"]
