"""Administering the register of units and their contacts, with the permission check and what a change moves.

The register's own services (qmsflow/engine/units.py) record each change in the administrative
log; this module adds the decision who may make it (``permissions.require_admin``: the lead unit
and administrators), the rule that a unit with open cases cannot simply end, and the preview of a
parent change (which units and open cases move with the unit). Callers own the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import units
from .errors import FieldProblem, NotFound, ValidationFailed
from .models import Case, Contact, Unit
from .permissions import Actor, AdminArea, require_admin
from .runtime import Runtime


@dataclass(frozen=True)
class MovedUnit:
    """A unit that moves with a parent change: the unit itself or one below it on the day."""

    unit_id: int
    code: str
    name: str
    open_cases: int


@dataclass(frozen=True)
class ParentChange:
    """What changing a unit's parent from ``on`` moves: from which parent to which, and the units and cases."""

    unit_id: int
    on: date
    old_parent_id: int | None
    old_parent_name: str | None
    new_parent_id: int
    new_parent_name: str
    units: tuple[MovedUnit, ...]  # the unit first, then those below it on ``on``

    @property
    def open_cases(self) -> int:
        """The open cases whose supervisor changes with the move."""
        return sum(u.open_cases for u in self.units)


def _unit(session: Session, unit_id: int) -> Unit:
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound("unit", unit_id)
    return unit


def _parent(session: Session, parent_id: int | None, on: date, field: str = "parent_id") -> Unit | None:
    if parent_id is None:
        return None
    parent = session.get(Unit, parent_id)
    if parent is None or not parent.valid_on(on):
        raise ValidationFailed([FieldProblem(field, "no_unit_on", {"unit": parent_id, "day": on})])
    return parent


def open_case_count(session: Session, unit_id: int) -> int:
    """The unit's cases that are not closed."""
    return int(session.scalar(select(func.count()).select_from(Case).where(Case.unit_id == unit_id, Case.closed_at.is_(None))) or 0)


def create(
    session: Session, rt: Runtime, actor: Actor, *, code: str, name: str, kind: str, valid_from: date, parent_id: int | None = None
) -> Unit:
    """Register a unit from ``valid_from``, under ``parent_id`` if given. Logged."""
    require_admin(actor, AdminArea.UNITS)
    parent = _parent(session, parent_id, valid_from)
    return units.create_unit(session, code=code, name=name, kind=kind, valid_from=valid_from, parent=parent, rt=rt, actor=actor)


def change(
    session: Session, rt: Runtime, actor: Actor, unit_id: int, *, on: date, name: str | None = None, code: str | None = None,
    kind: str | None = None,
) -> Unit:
    """Change a unit's name, code or kind from ``on`` (units.change_unit: a new version from that day). Logged."""
    require_admin(actor, AdminArea.UNITS)
    _unit(session, unit_id)
    return units.change_unit(session, rt, actor, unit_id, on=on, name=name, code=code, kind=kind)


def set_contact(
    session: Session, rt: Runtime, actor: Actor, unit_id: int, role: str, name: str, email: str | None, phone: str | None
) -> Contact:
    """Set the unit's head or ISO officer. Logged when it changes anything."""
    require_admin(actor, AdminArea.CONTACTS)
    if phone is not None and len(phone) > 32:
        raise ValidationFailed([FieldProblem("phone", "max_length", {"n": 32})])
    if email is not None and len(email) > 255:
        raise ValidationFailed([FieldProblem("email", "max_length", {"n": 255})])
    if len(name) > 255:
        raise ValidationFailed([FieldProblem("name", "max_length", {"n": 255})])
    return units.set_contact(session, _unit(session, unit_id), role, name, email or None, phone or None, rt=rt, actor=actor)


def preview_parent_change(session: Session, rt: Runtime, actor: Actor, unit_id: int, *, parent_id: int, on: date) -> ParentChange:
    """Say what moving ``unit_id`` under ``parent_id`` from ``on`` (past or future) moves; changes nothing."""
    require_admin(actor, AdminArea.UNITS)
    unit = _unit(session, unit_id)
    if not unit.valid_on(on):
        raise ValidationFailed([FieldProblem("on", "unit_absent_on", {"day": on})])
    parent = _parent(session, parent_id, on)
    assert parent is not None
    below = units.subtree_ids(session, unit_id, on)
    if parent.id in below:
        raise ValidationFailed([FieldProblem("parent_id", "under_itself")])
    counts = dict(
        session.execute(
            select(Case.unit_id, func.count()).where(Case.unit_id.in_(below), Case.closed_at.is_(None)).group_by(Case.unit_id)
        ).tuples().all()
    )
    rows = session.execute(select(Unit.id, Unit.code, Unit.name).where(Unit.id.in_(below))).tuples().all()
    moved = sorted((MovedUnit(uid, code, name, int(counts.get(uid, 0))) for uid, code, name in rows),
                   key=lambda m: (m.unit_id != unit_id, m.code))
    old_id = units.parent_id(session, unit_id, on)
    old = session.get(Unit, old_id) if old_id is not None else None
    return ParentChange(unit_id, on, old_id, old.name if old else None, parent.id, parent.name, tuple(moved))


def change_parent(session: Session, rt: Runtime, actor: Actor, unit_id: int, *, parent_id: int, on: date) -> ParentChange:
    """Move ``unit_id`` under ``parent_id`` from ``on``; returns what moved. Logged (units.change_unit)."""
    preview = preview_parent_change(session, rt, actor, unit_id, parent_id=parent_id, on=on)
    units.change_unit(session, rt, actor, unit_id, on=on, parent_id=parent_id)
    return preview


def end(session: Session, rt: Runtime, actor: Actor, unit_id: int, *, on: date) -> Unit:
    """End the unit's validity on ``on`` (its last day is the day before); refused while it has open cases. Logged.

    The registry's dissolve (qmsflow/engine/reorganize.py: its cases withdrawn, its children moved)
    is to take over this path; until then a unit with open cases is refused here, so no case is
    left with a unit that no longer exists.
    """
    require_admin(actor, AdminArea.UNITS)
    _unit(session, unit_id)
    count = open_case_count(session, unit_id)
    if count:
        raise ValidationFailed([FieldProblem("on", "unit_has_open_cases", {"count": count})])
    return units.end_unit(session, rt, actor, unit_id, on=on)


__all__ = ["MovedUnit", "ParentChange", "change", "change_parent", "create", "end", "open_case_count",
           "preview_parent_change", "set_contact"]
