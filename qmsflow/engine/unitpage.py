"""What a unit's page shows: its identity over time, contacts, cases with their deadlines, successions.

One read service, so the page (and a later API) cannot disagree about what belongs to a unit. A unit
outside the reader's scope today is reported as not found (qmsflow/engine/permissions.py), the same
answer as a unit that does not exist. A fixed number of statements whatever the unit holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, aliased

from .clock import local_date
from .deadlines import Deadline, unit_deadlines
from .errors import NotFound
from .models import Case, Contact, Unit, UnitParent, UnitSuccession, UnitVersion
from .permissions import Actor, visible_units
from .runtime import Runtime


@dataclass(frozen=True)
class VersionRow:
    """A name, code and kind the unit bore over ``[valid_from, valid_to)``."""

    code: str
    name: str
    kind: str
    is_lead: bool
    valid_from: date
    valid_to: date | None

    @property
    def last_day(self) -> date | None:
        """The last day of the period (``valid_to`` is exclusive)."""
        return self.valid_to - timedelta(days=1) if self.valid_to else None


@dataclass(frozen=True)
class ParentRow:
    """The unit that supervised this one over ``[valid_from, valid_to)`` (its current code and name)."""

    parent_id: int
    code: str
    name: str
    valid_from: date
    valid_to: date | None

    @property
    def last_day(self) -> date | None:
        """The last day of the period (``valid_to`` is exclusive)."""
        return self.valid_to - timedelta(days=1) if self.valid_to else None


@dataclass(frozen=True)
class SuccessionRow:
    """A predecessor or successor of the unit, and the day the successor took over."""

    unit_id: int
    code: str
    name: str
    effective: date


@dataclass(frozen=True)
class ContactRow:
    """The unit's head or ISO officer."""

    role: str
    name: str
    email: str | None
    phone: str | None


@dataclass(frozen=True)
class CaseRow:
    """One of the unit's cases, with its stage and pending deadlines."""

    case_id: int
    workflow_label: str
    state_label: str
    stage: str | None
    opened_on: date
    closed: bool
    deadlines: tuple[Deadline, ...]


@dataclass(frozen=True)
class UnitPage:
    """Everything the unit page shows, as of ``today``."""

    unit_id: int
    code: str
    name: str
    kind: str
    is_lead: bool
    valid_from: date
    valid_to: date | None
    today: date
    versions: tuple[VersionRow, ...]  # oldest first; the last is the current one
    parents: tuple[ParentRow, ...]  # oldest first
    contacts: tuple[ContactRow, ...]
    cases: tuple[CaseRow, ...]  # open first, newest first
    predecessors: tuple[SuccessionRow, ...]
    successors: tuple[SuccessionRow, ...]

    @property
    def last_day(self) -> date | None:
        """The last day of the period (``valid_to`` is exclusive)."""
        return self.valid_to - timedelta(days=1) if self.valid_to else None

    @property
    def earlier_versions(self) -> tuple[VersionRow, ...]:
        """The names and codes the unit had before its current one."""
        return self.versions[:-1]


def unit_page(session: Session, rt: Runtime, actor: Actor, unit_id: int, *, language: str | None = None) -> UnitPage:
    """Return the unit's page for ``actor``; NotFound when it does not exist or is outside the actor's scope."""
    language = language or rt.language
    today = local_date(rt.clock.now())
    unit = session.get(Unit, unit_id)
    if unit is None or not visible_units(actor, today).contains(session, unit_id):
        raise NotFound("unit", unit_id)
    versions = tuple(
        VersionRow(v.code, v.name, v.kind, v.is_lead, v.valid_from, v.valid_to)
        for v in session.scalars(select(UnitVersion).where(UnitVersion.unit_id == unit_id).order_by(UnitVersion.valid_from))
    )
    parent = aliased(Unit)
    parents = tuple(
        ParentRow(pid, code, name, start, end)
        for pid, code, name, start, end in session.execute(
            select(UnitParent.parent_id, parent.code, parent.name, UnitParent.valid_from, UnitParent.valid_to)
            .join(parent, parent.id == UnitParent.parent_id)
            .where(UnitParent.unit_id == unit_id)
            .order_by(UnitParent.valid_from)
        ).tuples()
    )
    contacts = tuple(
        ContactRow(c.role, c.name, c.email, c.phone)
        for c in session.scalars(select(Contact).where(Contact.unit_id == unit_id).order_by(Contact.role))
    )
    other = aliased(Unit)
    linked = session.execute(
        select(UnitSuccession.predecessor_id, UnitSuccession.successor_id, UnitSuccession.effective, other.id, other.code, other.name)
        .join(other, or_(
            (UnitSuccession.predecessor_id == unit_id) & (other.id == UnitSuccession.successor_id),
            (UnitSuccession.successor_id == unit_id) & (other.id == UnitSuccession.predecessor_id),
        ))
        .order_by(UnitSuccession.effective, UnitSuccession.id)
    ).tuples().all()
    predecessors = tuple(SuccessionRow(oid, code, name, eff) for _p, s, eff, oid, code, name in linked if s == unit_id)
    successors = tuple(SuccessionRow(oid, code, name, eff) for p, _s, eff, oid, code, name in linked if p == unit_id)
    by_case: dict[int, list[Deadline]] = {}
    for deadline in unit_deadlines(session, rt, actor, unit_id, language=language):
        by_case.setdefault(deadline.case_id, []).append(deadline)
    cases = []
    for case in session.scalars(
        select(Case).where(Case.unit_id == unit_id).order_by(Case.closed_at.is_not(None), Case.opened_at.desc(), Case.id.desc())
    ):
        definition = rt.registry.get(case.workflow, case.workflow_version)
        state = definition.spec.states[case.state]
        cases.append(CaseRow(
            case.id, definition.spec.label.get(language), state.label.get(language), state.stage,
            local_date(case.opened_at), case.closed_at is not None, tuple(by_case.get(case.id, ())),
        ))
    return UnitPage(
        unit_id=unit.id, code=unit.code, name=unit.name, kind=unit.kind, is_lead=unit.is_lead,
        valid_from=unit.valid_from, valid_to=unit.valid_to, today=today, versions=versions, parents=parents,
        contacts=contacts, cases=tuple(cases), predecessors=predecessors, successors=successors,
    )


__all__ = ["CaseRow", "ContactRow", "ParentRow", "SuccessionRow", "UnitPage", "VersionRow", "unit_page"]
