"""Units, their effective-dated parents and contacts; the hierarchy questions escalation asks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Date, Select, and_, cast, func, literal, null, or_, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from . import adminlog, unitsearch  # noqa: F401  (unitsearch's hooks keep every version's search words in step)
from .definitions import Target
from .errors import Conflict, FieldProblem, NotFound, ValidationFailed
from .models import Contact, Unit, UnitParent, UnitSuccession, UnitVersion
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


# Each kind's name for display, in both languages (the kind's value is what files and the API carry).
KIND_LABELS: dict[str, dict[str, str]] = {
    UnitKind.PROVINCE_PC: {"vi": "UBND tỉnh", "en": "Provincial People's Committee"},
    UnitKind.PROVINCE_OFFICE: {"vi": "Văn phòng UBND tỉnh", "en": "Office of the Provincial People's Committee"},
    UnitKind.DEPARTMENT: {"vi": "Sở, ban, ngành", "en": "Department"},
    UnitKind.BRANCH: {"vi": "Chi cục", "en": "Branch (Chi cục)"},
    UnitKind.DISTRICT_PC: {"vi": "UBND huyện (đến 2025)", "en": "District People's Committee (until 2025)"},
    UnitKind.COMMUNE_PC: {"vi": "UBND xã, phường, đặc khu", "en": "Commune, ward or special-zone People's Committee"},
    UnitKind.HIGH_SCHOOL: {"vi": "Trường THPT", "en": "High school (THPT)"},
    UnitKind.LOWER_SECONDARY: {"vi": "Trường THCS", "en": "Lower secondary school (THCS)"},
    UnitKind.OTHER: {"vi": "Khác", "en": "Other"},
}


def kind_label(kind: str, language: str) -> str:
    """The kind's name in ``language`` (``vi`` or ``en``); an unknown kind is shown as it is."""
    labels = KIND_LABELS.get(kind)
    return labels["en" if language == "en" else "vi"] if labels else kind


def _valid_on(model: type[Unit] | type[UnitParent] | type[UnitVersion], day: date) -> ColumnElement[bool]:
    return and_(model.valid_from <= day, or_(model.valid_to.is_(None), model.valid_to > day))


def _overlapping(model: type[UnitVersion] | type[UnitParent], start: date, end: date | None) -> ColumnElement[bool]:
    """SQL: the row's period overlaps ``[start, end)`` (``end`` None: open-ended)."""
    return and_(or_(model.valid_to.is_(None), model.valid_to > start), *([model.valid_from < end] if end else []))


_UNCHANGED: Any = object()  # change_unit: "the parent stays as it is" (None means "no parent")


def _check_attributes(code: str, name: str, kind: str) -> list[FieldProblem]:
    problems = []
    if not code:
        problems.append(FieldProblem("code", "required"))
    elif len(code) > 32:
        problems.append(FieldProblem("code", "max_length", {"n": 32}))
    if not name:
        problems.append(FieldProblem("name", "required"))
    elif len(name) > 255:
        problems.append(FieldProblem("name", "max_length", {"n": 255}))
    if kind not in {k.value for k in UnitKind}:
        problems.append(FieldProblem("kind", "unknown_kind", {"value": repr(kind), "choices": [k.value for k in UnitKind]}))
    return problems


def _check_free(
    session: Session, unit_id: int | None, code: str, is_lead: bool, start: date, end: date | None
) -> None:
    """Raise Conflict if another unit holds ``code``, or is the lead unit, in part of ``[start, end)``.

    The database refuses the same rows (migration 0007); asking first gives the clearer message.
    """
    others = [UnitVersion.unit_id != unit_id] if unit_id is not None else []
    clash = session.scalar(
        select(UnitVersion).where(UnitVersion.code == code, _overlapping(UnitVersion, start, end), *others).limit(1)
    )
    if clash is not None:
        raise Conflict(
            f"code {code} is already used by {clash.name} from {clash.valid_from}", {"unit_id": clash.unit_id}
        )
    if is_lead:
        lead = session.scalar(
            select(UnitVersion).where(UnitVersion.is_lead.is_(True), _overlapping(UnitVersion, start, end), *others).limit(1)
        )
        if lead is not None:
            raise Conflict(f"{lead.name} is the lead unit from {lead.valid_from}", {"unit_id": lead.unit_id})


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
    code = (code or "").strip()
    name = (name or "").strip()
    problems = _check_attributes(code, name, kind)
    if valid_to is not None and valid_to <= valid_from:
        problems.append(FieldProblem("valid_to", "after_valid_from"))
    if problems:
        raise ValidationFailed(problems)
    _check_free(session, None, code, is_lead, valid_from, valid_to)
    unit = Unit(valid_from=valid_from, valid_to=valid_to)
    session.add(unit)
    session.flush()
    version = UnitVersion(
        unit_id=unit.id, valid_from=valid_from, valid_to=valid_to, code=code, name=name, kind=kind, is_lead=is_lead
    )
    session.add(version)
    session.flush()
    # the unit's one version is its current one: no query to find it again
    set_committed_value(unit, "current", version)
    set_committed_value(unit, "versions", [version])
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


def _version_state(version: UnitVersion, parent: int | None) -> dict[str, Any]:
    return {
        "code": version.code, "name": version.name, "kind": version.kind, "is_lead": version.is_lead,
        "parent_id": parent, "valid_from": version.valid_from.isoformat(),
        "valid_to": version.valid_to.isoformat() if version.valid_to else None,
    }


def _refresh(session: Session, unit: Unit) -> None:
    """Make ``unit.current`` and ``unit.versions`` read their rows again after a change of versions."""
    session.flush()
    session.expire(unit, ["current", "versions"])


def change_unit(
    session: Session,
    rt: Runtime,
    actor: Actor,
    unit_id: int,
    *,
    on: date,
    name: str | None = None,
    code: str | None = None,
    kind: str | None = None,
    is_lead: bool | None = None,
    parent_id: int | None = _UNCHANGED,
) -> Unit:
    """Change a unit's attributes from ``on``: the version in force that day ends, a new one begins. Logged.

    The unit keeps its id, so its cases, users and history stay its own. Attributes not given keep
    their value; ``parent_id=None`` ends the unit's parent link on ``on``. The new version lasts as
    long as the one it replaces would have (a change already recorded for a later day still comes).
    """
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound("unit", unit_id)
    if not unit.valid_on(on):
        raise ValidationFailed([FieldProblem("on", "unit_absent_on", {"day": on})])
    old = session.scalar(select(UnitVersion).where(UnitVersion.unit_id == unit_id, _valid_on(UnitVersion, on)))
    if old is None:  # a unit made outside the services, without versions
        raise NotFound("unit version", f"{unit_id} on {on}")
    new_code = old.code if code is None else code.strip()
    new_name = old.name if name is None else name.strip()
    new_kind = old.kind if kind is None else kind
    new_lead = old.is_lead if is_lead is None else bool(is_lead)
    problems = _check_attributes(new_code, new_name, new_kind)
    parent = None
    if parent_id is not _UNCHANGED and parent_id is not None:
        parent = session.get(Unit, parent_id)
        if parent is None or not parent.valid_on(on):
            problems.append(FieldProblem("parent_id", "no_unit_on", {"unit": parent_id, "day": on}))
    if problems:
        raise ValidationFailed(problems)
    old_parent = _parent_on(session, unit_id, on)
    before = _version_state(old, old_parent)
    attributes = (new_code, new_name, new_kind, new_lead)
    if attributes != (old.code, old.name, old.kind, old.is_lead):
        _check_free(session, unit_id, new_code, new_lead, on, old.valid_to)
        if old.valid_from == on:  # a second change on the same day corrects that day's version
            old.code, old.name, old.kind, old.is_lead = attributes
            version = old
        else:
            version = UnitVersion(
                unit_id=unit_id, valid_from=on, valid_to=old.valid_to,
                code=new_code, name=new_name, kind=new_kind, is_lead=new_lead,
            )
            old.valid_to = on
            session.flush()  # end the old period before the new one begins: the database checks each row
            session.add(version)
    else:
        version = old
    new_parent = old_parent
    if parent_id is not _UNCHANGED and parent_id != old_parent:
        if parent is not None:
            _link_parent(session, unit, parent, on)
        else:
            _end_parent_link(session, unit, on)
        new_parent = parent_id
    _refresh(session, unit)
    after = _version_state(version, new_parent)
    if adminlog.changed(before, after):
        adminlog.record(
            session, rt.history_key, actor, at=rt.clock.now(), action="unit.change", object_kind="unit",
            object_id=unit_id, before=before, after={**after, "on": on.isoformat()},
        )
    return unit


def record_succession(
    session: Session, rt: Runtime, actor: Actor, predecessor_id: int, successor_id: int, *, on: date
) -> UnitSuccession:
    """Record that ``successor_id`` takes over from ``predecessor_id`` on ``on`` (a merger or a split). Logged.

    The predecessor ends on ``on`` if it had not already (its current version and parent link end
    with it); a split records one succession per successor, a merger one per predecessor. From
    ``on`` the successor's officers and supervisors read the predecessor's cases (permissions.py).
    """
    if predecessor_id == successor_id:
        raise ValidationFailed([FieldProblem("successor_id", "self_succession")])
    predecessor = session.get(Unit, predecessor_id)
    successor = session.get(Unit, successor_id)
    problems = []
    if predecessor is None or not (predecessor.valid_from < on and (predecessor.valid_to is None or predecessor.valid_to >= on)):
        problems.append(FieldProblem("predecessor_id", "no_unit_before", {"unit": predecessor_id, "day": on}))
    if successor is None or not successor.valid_on(on):
        problems.append(FieldProblem("successor_id", "no_unit_on", {"unit": successor_id, "day": on}))
    if problems:
        raise ValidationFailed(problems)
    assert predecessor is not None and successor is not None
    existing = session.scalar(
        select(UnitSuccession).where(
            UnitSuccession.predecessor_id == predecessor_id, UnitSuccession.successor_id == successor_id
        )
    )
    if existing is not None:
        raise Conflict(f"unit {successor_id} already succeeds unit {predecessor_id} from {existing.effective}")
    before = _unit_state(predecessor)
    if predecessor.valid_to is None or predecessor.valid_to > on:
        _end_unit(session, predecessor, on)
    succession = UnitSuccession(predecessor_id=predecessor_id, successor_id=successor_id, effective=on)
    session.add(succession)
    _refresh(session, predecessor)
    adminlog.record(
        session, rt.history_key, actor, at=rt.clock.now(), action="unit.succession", object_kind="unit",
        object_id=predecessor_id, before=before,
        after={**_unit_state(predecessor), "successor_id": successor_id, "effective": on.isoformat()},
    )
    return succession


def end_unit(session: Session, rt: Runtime, actor: Actor, unit_id: int, *, on: date) -> Unit:
    """End a unit on ``on`` (its last day is the day before): its version and parent link end too. Logged.

    Its cases stay its own and readable; its code is free for another unit from ``on``.
    """
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound("unit", unit_id)
    if not (unit.valid_from < on and (unit.valid_to is None or unit.valid_to > on)):
        raise ValidationFailed([FieldProblem("on", "unit_life", {"start": unit.valid_from, "end": unit.valid_to or "-"})])
    before = _unit_state(unit)
    _end_unit(session, unit, on)
    _refresh(session, unit)
    adminlog.record(
        session, rt.history_key, actor, at=rt.clock.now(), action="unit.end", object_kind="unit", object_id=unit_id,
        before=before, after=_unit_state(unit),
    )
    return unit


def _end_unit(session: Session, unit: Unit, on: date) -> None:
    later = session.scalar(
        select(UnitVersion.id).where(UnitVersion.unit_id == unit.id, UnitVersion.valid_from >= on).limit(1)
    )
    if later is not None:
        raise Conflict(f"unit {unit.id} has a change recorded from {on} or later; it cannot end on {on}")
    last = session.scalar(select(UnitVersion).where(UnitVersion.unit_id == unit.id, _valid_on(UnitVersion, on)))
    if last is not None:
        last.valid_to = on
    unit.valid_to = on
    _end_parent_link(session, unit, on)


def _end_parent_link(session: Session, unit: Unit, on: date) -> None:
    link = session.scalar(select(UnitParent).where(UnitParent.unit_id == unit.id, _valid_on(UnitParent, on)))
    if link is None:
        return
    if link.valid_from >= on:
        session.delete(link)
    else:
        link.valid_to = on


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
        raise ValidationFailed([FieldProblem("parent", "under_itself")])
    current = session.scalar(
        select(UnitParent).where(UnitParent.unit_id == unit.id, UnitParent.valid_to.is_(None))
    )
    if current is not None:
        if current.valid_from >= on:
            raise Conflict(f"unit {unit.code} already has a parent from {current.valid_from}")
        current.valid_to = on
        session.flush()  # end the old period before the new one begins: the database checks each row
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
        raise ValidationFailed([FieldProblem("role", "contact_role")])
    if not name.strip():
        raise ValidationFailed([FieldProblem("name", "required")])
    if email and "@" not in email:
        raise ValidationFailed([FieldProblem("email", "not_an_email", {"value": repr(email)})])
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
    """Return the unit holding the official ``code`` on ``on``; raise NotFound otherwise.

    A code names different units in different periods (a commune code passed on in 2025), so a
    look-up by code always takes a date; pages and the API refer to units by id.
    """
    unit = session.scalar(
        select(Unit).join(UnitVersion, UnitVersion.unit_id == Unit.id).where(
            UnitVersion.code == code, _valid_on(UnitVersion, on)
        )
    )
    if unit is None:
        raise NotFound("unit", code)
    return unit


def version_on(session: Session, unit_id: int, on: date) -> UnitVersion | None:
    """Return the unit's name, code, kind and lead flag as they stood on ``on`` (None outside its life)."""
    return session.scalar(select(UnitVersion).where(UnitVersion.unit_id == unit_id, _valid_on(UnitVersion, on)))


def successions(session: Session, unit_id: int) -> list[UnitSuccession]:
    """Return the successions the unit takes part in, as predecessor or successor, oldest first."""
    return list(
        session.scalars(
            select(UnitSuccession)
            .where(or_(UnitSuccession.predecessor_id == unit_id, UnitSuccession.successor_id == unit_id))
            .order_by(UnitSuccession.effective, UnitSuccession.id)
        )
    )


def _parent_on(session: Session, unit_id: int, on: date) -> int | None:
    return session.scalar(
        select(UnitParent.parent_id).where(UnitParent.unit_id == unit_id, _valid_on(UnitParent, on))
    )


def parent_id(session: Session, unit_id: int, on: date) -> int | None:
    """Return the id of the unit's parent on ``on``."""
    return _parent_on(session, unit_id, on)


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


def visible_select(root_id: int, on: date, *, below: bool) -> Select[tuple[int]]:
    """Return a SELECT of the units seen from ``root_id`` on ``on``: the unit, with ``below`` every unit
    under it that day, and the predecessors of each as they stood the day before their successor took
    over (with ``below``, their own subordinates of that day too), transitively.

    One recursive CTE over one set of edges: parent links (down the hierarchy, only when ``below``)
    and successions (back to the predecessor). Each row carries the day it is seen as of: ``NULL``
    for ``on`` itself, or the date a succession took effect, meaning "the day before it". A
    succession is followed only when it took effect by then, so the dates strictly fall and the
    recursion ends; UNION (not UNION ALL) stops at a cycle of parent links.
    """
    no_date = cast(null(), Date)
    succession_edges = select(
        UnitSuccession.successor_id.label("source"), UnitSuccession.predecessor_id.label("target"),
        no_date.label("link_from"), no_date.label("link_to"), UnitSuccession.effective.label("effective"),
    )
    if below:
        parent_edges = select(
            UnitParent.parent_id.label("source"), UnitParent.unit_id.label("target"),
            UnitParent.valid_from.label("link_from"), UnitParent.valid_to.label("link_to"), no_date.label("effective"),
        )
        edges = union_all(parent_edges, succession_edges).subquery("scope_edges")
    else:
        edges = succession_edges.subquery("scope_edges")
    tree = select(literal(root_id).label("unit_id"), no_date.label("as_before")).cte("visible_units", recursive=True)
    seen_on_day = tree.c.as_before.is_(None)
    link_holds = or_(
        and_(seen_on_day, edges.c.link_from <= on, or_(edges.c.link_to.is_(None), edges.c.link_to > on)),
        # in force on the day before ``as_before``: it began before it and had not ended by it
        and_(edges.c.link_from < tree.c.as_before, or_(edges.c.link_to.is_(None), edges.c.link_to >= tree.c.as_before)),
    )
    succession_holds = or_(and_(seen_on_day, edges.c.effective <= on), edges.c.effective < tree.c.as_before)
    step = (
        select(edges.c.target, func.coalesce(edges.c.effective, tree.c.as_before))
        .select_from(tree.join(edges, edges.c.source == tree.c.unit_id))
        .where(or_(and_(edges.c.effective.is_(None), link_holds), and_(edges.c.effective.is_not(None), succession_holds)))
    )
    tree = tree.union(step)
    return select(tree.c.unit_id).distinct()


def subtree_ids(session: Session, root_id: int, on: date) -> set[int]:
    """Return the unit and every unit below it on ``on`` (a recursive query, one round trip)."""
    return set(session.scalars(subtree_select(root_id, on)))


def lead_unit(session: Session, on: date) -> Unit | None:
    """Return the lead unit (the Dept of S&T) on ``on``."""
    return session.scalar(
        select(Unit).join(UnitVersion, UnitVersion.unit_id == Unit.id)
        .where(UnitVersion.is_lead.is_(True), _valid_on(UnitVersion, on)).limit(1)
    )


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
    pcs = session.scalars(
        select(UnitVersion.unit_id).where(
            UnitVersion.unit_id.in_(chain), UnitVersion.kind == UnitKind.PROVINCE_PC.value, _valid_on(UnitVersion, on)
        )
    )
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
        """Read the links valid on ``on``, the lead unit, the province PCs and their (current) codes: four statements."""
        parents = dict(
            session.execute(select(UnitParent.unit_id, UnitParent.parent_id).where(_valid_on(UnitParent, on))).tuples().all()
        )
        lead = session.scalar(
            select(UnitVersion.unit_id).where(UnitVersion.is_lead.is_(True), _valid_on(UnitVersion, on)).limit(1)
        )
        pcs = frozenset(
            session.scalars(
                select(UnitVersion.unit_id).where(UnitVersion.kind == UnitKind.PROVINCE_PC.value, _valid_on(UnitVersion, on))
            )
        )
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
    "KIND_LABELS",
    "EscalationBody",
    "Hierarchy",
    "UnitKind",
    "ancestor_ids",
    "change_unit",
    "create_unit",
    "end_unit",
    "escalation_body",
    "kind_label",
    "lead_unit",
    "parent_id",
    "record_succession",
    "set_contact",
    "set_parent",
    "subtree_ids",
    "subtree_select",
    "successions",
    "unit_by_code",
    "version_on",
    "visible_select",
]
