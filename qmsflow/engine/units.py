"""Units, their effective-dated parents and contacts; the hierarchy questions escalation asks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Select, and_, literal, or_, select
from sqlalchemy.orm import Session

from . import adminlog
from .definitions import Target
from .errors import Conflict, FieldProblem, NotFound, ValidationFailed
from .models import Contact, Unit, UnitParent
from .runtime import Runtime

if TYPE_CHECKING:  # permissions imports this module
    from .permissions import Actor


class UnitKind(StrEnum):
    """The kinds of public body in scope (docs/domain.md, "Who is in scope")."""

    PROVINCE_PC = "province_pc"  # UBND tỉnh
    PROVINCE_OFFICE = "province_office"  # Văn phòng UBND tỉnh
    DEPARTMENT = "department"  # Sở
    BRANCH = "branch"  # Chi cục
    DISTRICT_PC = "district_pc"  # UBND huyện (abolished 1 July 2025)
    COMMUNE_PC = "commune_pc"  # UBND xã / phường / đặc khu
    HIGH_SCHOOL = "high_school"  # THPT
    LOWER_SECONDARY = "lower_secondary_school"  # THCS
    OTHER = "other"


def _valid_on(model: type[Unit] | type[UnitParent], day: date) -> ColumnElement[bool]:
    return and_(model.valid_from <= day, or_(model.valid_to.is_(None), model.valid_to > day))


def create_unit(
    session: Session,
    *,
    code: str,
    name: str,
    kind: str,
    valid_from: date,
    parent: Unit | None = None,
    is_lead: bool = False,
    valid_to: date | None = None,
    rt: Runtime,
    actor: Actor,
) -> Unit:
    """Register a unit; its code must not be used by another unit in an overlapping period. Logged."""
    problems = []
    code = (code or "").strip()
    name = (name or "").strip()
    if not code:
        problems.append(FieldProblem("code", "required"))
    if not name:
        problems.append(FieldProblem("name", "required"))
    if kind not in {k.value for k in UnitKind}:
        problems.append(FieldProblem("kind", f"unknown kind {kind!r}; one of {[k.value for k in UnitKind]}"))
    if valid_to is not None and valid_to <= valid_from:
        problems.append(FieldProblem("valid_to", "must be after valid_from"))
    if problems:
        raise ValidationFailed(problems)
    clash = session.scalar(
        select(Unit).where(
            Unit.code == code,
            or_(Unit.valid_to.is_(None), Unit.valid_to > valid_from),
            *([Unit.valid_from < valid_to] if valid_to else []),
        )
    )
    if clash is not None:
        raise Conflict(f"code {code} is already used by {clash.name} from {clash.valid_from}")
    unit = Unit(code=code, name=name, kind=kind, is_lead=is_lead, valid_from=valid_from, valid_to=valid_to)
    session.add(unit)
    session.flush()
    if parent is not None:
        _link_parent(session, unit, parent, valid_from)
    after = {**_unit_state(unit), "parent_id": parent.id if parent else None}
    adminlog.record(
        session, rt.history_key, actor, at=rt.clock.now(), action="unit.create", object_kind="unit", object_id=unit.id,
        before=None, after=after,
    )
    return unit


def _unit_state(unit: Unit) -> dict[str, Any]:
    return {
        "code": unit.code, "name": unit.name, "kind": unit.kind, "is_lead": unit.is_lead,
        "valid_from": unit.valid_from.isoformat(), "valid_to": unit.valid_to.isoformat() if unit.valid_to else None,
    }


def set_parent(session: Session, unit: Unit, parent: Unit, on: date, *, rt: Runtime, actor: Actor) -> UnitParent:
    """Make ``parent`` supervise ``unit`` from ``on``; the previous link ends that day. Logged."""
    current = session.scalar(select(UnitParent).where(UnitParent.unit_id == unit.id, UnitParent.valid_to.is_(None)))
    before = {"parent_id": current.parent_id, "valid_from": current.valid_from.isoformat()} if current else None
    link = _link_parent(session, unit, parent, on)
    adminlog.record(
        session, rt.history_key, actor, at=rt.clock.now(), action="unit.set_parent", object_kind="unit", object_id=unit.id,
        before=before, after={"parent_id": parent.id, "valid_from": on.isoformat()},
    )
    return link


def _link_parent(session: Session, unit: Unit, parent: Unit, on: date) -> UnitParent:
    if parent.id == unit.id or unit.id in ancestor_ids(session, parent.id, on):
        raise ValidationFailed([FieldProblem("parent", "a unit cannot be under itself")])
    current = session.scalar(
        select(UnitParent).where(UnitParent.unit_id == unit.id, UnitParent.valid_to.is_(None))
    )
    if current is not None:
        if current.valid_from >= on:
            raise Conflict(f"unit {unit.code} already has a parent from {current.valid_from}")
        current.valid_to = on
    link = UnitParent(unit_id=unit.id, parent_id=parent.id, valid_from=on, valid_to=None)
    session.add(link)
    session.flush()
    return link


def set_contact(
    session: Session, unit: Unit, role: str, name: str, email: str | None = None, phone: str | None = None,
    *, rt: Runtime, actor: Actor,
) -> Contact:
    """Set the unit's head or ISO officer. Logged when it changes anything."""
    if role not in {"head", "iso_officer"}:
        raise ValidationFailed([FieldProblem("role", "must be head or iso_officer")])
    if not name.strip():
        raise ValidationFailed([FieldProblem("name", "required")])
    if email and "@" not in email:
        raise ValidationFailed([FieldProblem("email", f"{email!r} is not an email address")])
    contact = session.scalar(select(Contact).where(Contact.unit_id == unit.id, Contact.role == role))
    before = {"name": contact.name, "email": contact.email, "phone": contact.phone} if contact else None
    if contact is None:
        contact = Contact(unit_id=unit.id, role=role, name=name.strip(), email=email, phone=phone)
        session.add(contact)
    else:
        contact.name, contact.email, contact.phone = name.strip(), email, phone
    session.flush()
    after = {"name": contact.name, "email": contact.email, "phone": contact.phone}
    if adminlog.changed(before, after):
        adminlog.record(
            session, rt.history_key, actor, at=rt.clock.now(), action="contact.set", object_kind="contact",
            object_id=f"{unit.id}:{role}", before=before, after=after,
        )
    return contact


def unit_by_code(session: Session, code: str, on: date) -> Unit:
    """Return the unit holding ``code`` on ``on``; raise NotFound otherwise."""
    unit = session.scalar(select(Unit).where(Unit.code == code, _valid_on(Unit, on)))
    if unit is None:
        raise NotFound("unit", code)
    return unit


def parent_id(session: Session, unit_id: int, on: date) -> int | None:
    """Return the id of the unit's parent on ``on``."""
    return session.scalar(
        select(UnitParent.parent_id).where(UnitParent.unit_id == unit_id, _valid_on(UnitParent, on))
    )


def ancestor_ids(session: Session, unit_id: int, on: date) -> list[int]:
    """Return the chain of parents above a unit on ``on``, nearest first."""
    chain: list[int] = []
    current: int | None = unit_id
    while current is not None:
        current = parent_id(session, current, on)
        if current is None or current in chain or current == unit_id:
            break
        chain.append(current)
    return chain


def subtree_select(root_id: int, on: date) -> Select[tuple[int]]:
    """Return a SELECT of the unit and every unit below it on ``on``, for use inside other statements.

    A recursive CTE over the effective-dated links; UNION (not UNION ALL) stops at a cycle.
    """
    tree = select(literal(root_id).label("unit_id")).cte("scope_units", recursive=True)
    child = select(UnitParent.unit_id).join(tree, UnitParent.parent_id == tree.c.unit_id).where(
        _valid_on(UnitParent, on)
    )
    tree = tree.union(child)
    return select(tree.c.unit_id)


def subtree_ids(session: Session, root_id: int, on: date) -> set[int]:
    """Return the unit and every unit below it on ``on`` (a recursive query, one round trip)."""
    return set(session.scalars(subtree_select(root_id, on)))


def lead_unit(session: Session, on: date) -> Unit | None:
    """Return the lead unit (the Dept of S&T) on ``on``."""
    return session.scalar(select(Unit).where(Unit.is_lead.is_(True), _valid_on(Unit, on)).limit(1))


@dataclass(frozen=True)
class EscalationBody:
    """Who an escalation level goes to: the target kind and the unit that is that body."""

    target: Target
    unit_id: int | None


def escalation_body(session: Session, unit_id: int, target: Target, on: date) -> EscalationBody:
    """Resolve a ladder target to the body that is it for ``unit_id`` on ``on``.

    unit head: the unit itself; supervisor: its parent; lead: the Dept of S&T; provincial PC: the
    province People's Committee at the top of the unit's chain.
    """
    if target is Target.UNIT_HEAD:
        return EscalationBody(target, unit_id)
    if target is Target.SUPERVISOR:
        return EscalationBody(target, parent_id(session, unit_id, on))
    if target is Target.LEAD:
        lead = lead_unit(session, on)
        return EscalationBody(target, lead.id if lead else None)
    chain = [unit_id, *ancestor_ids(session, unit_id, on)]
    pcs = session.scalars(select(Unit.id).where(Unit.id.in_(chain), Unit.kind == UnitKind.PROVINCE_PC.value))
    found = set(pcs)
    top = next((u for u in reversed(chain) if u in found), None)
    return EscalationBody(target, top)


@dataclass(frozen=True)
class Hierarchy:
    """The unit hierarchy as it stands on one day, read once for many escalations (a sweep).

    Resolving each escalation with ``escalation_body`` costs a statement or more per case (the
    parent, the lead unit, the chain up to the province); a sweep batch of 200 escalations cost
    two to three statements per case (bench/RESULTS.md). This reads the links once, in a fixed
    number of statements, and answers ``escalation_body``'s question from memory.
    """

    on: date
    parents: dict[int, int]
    lead_id: int | None
    province_pcs: frozenset[int]
    codes: dict[int, str]  # the code of every unit an escalation can go to

    @classmethod
    def load(cls, session: Session, on: date) -> Hierarchy:
        """Read the links valid on ``on``, the lead unit, the province PCs and their codes (four statements)."""
        parents = dict(
            session.execute(select(UnitParent.unit_id, UnitParent.parent_id).where(_valid_on(UnitParent, on))).tuples().all()
        )
        lead = session.scalar(select(Unit.id).where(Unit.is_lead.is_(True), _valid_on(Unit, on)).order_by(Unit.id).limit(1))
        pcs = frozenset(session.scalars(select(Unit.id).where(Unit.kind == UnitKind.PROVINCE_PC.value)))
        bodies = set(parents.values()) | set(pcs) | ({lead} if lead is not None else set())
        codes = dict(session.execute(select(Unit.id, Unit.code).where(Unit.id.in_(bodies))).tuples().all()) if bodies else {}
        return cls(on, parents, lead, pcs, codes)

    def ancestors(self, unit_id: int) -> list[int]:
        """The chain of parents above ``unit_id``, nearest first (as ``ancestor_ids``)."""
        chain: list[int] = []
        current: int | None = unit_id
        while current is not None:
            current = self.parents.get(current)
            if current is None or current in chain or current == unit_id:
                break
            chain.append(current)
        return chain

    def body(self, unit_id: int, target: Target) -> int | None:
        """The unit that is ``target`` for ``unit_id`` (as ``escalation_body``), or None when there is none."""
        if target is Target.UNIT_HEAD:
            return unit_id
        if target is Target.SUPERVISOR:
            return self.parents.get(unit_id)
        if target is Target.LEAD:
            return self.lead_id
        chain = [unit_id, *self.ancestors(unit_id)]
        return next((u for u in reversed(chain) if u in self.province_pcs), None)


__all__ = [
    "EscalationBody",
    "Hierarchy",
    "UnitKind",
    "ancestor_ids",
    "create_unit",
    "escalation_body",
    "lead_unit",
    "parent_id",
    "set_contact",
    "set_parent",
    "subtree_ids",
    "subtree_select",
    "unit_by_code",
]
