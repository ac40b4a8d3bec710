"""Open escalations: each pending timer whose ladder has reached the supervisor or above, by level.

"Escalated" is lateness.py's definition (a fired ladder level whose target is the supervisor or
higher; the unit head alone is a reminder to the unit itself). The age of an escalation counts
working days on the runtime's working calendar since its level fired; the body it is addressed to
is resolved from the hierarchy as it stands today (units.Hierarchy, the sweep's own resolver).
The lead unit and the province-wide roles see every escalation, a supervisor those of its scope;
a unit officer reads its own on its case pages and My work, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from .clock import local_date
from .deadlines import working_days_left
from .definitions import Role, Target
from .errors import NotPermitted
from .lateness import ESCALATED_RANK, RANK_TARGET, escalation_rank
from .models import Case, Timer, TimerFiring, Unit
from .permissions import Actor, visible_units
from .runtime import Runtime
from .timers import timer_key
from .units import Hierarchy

MAX_ROWS = 2000
_READERS = frozenset({Role.ADMIN, Role.LEAD, Role.SUPERVISOR, Role.VIEWER})


@dataclass(frozen=True)
class Escalation:
    """One open escalation."""

    timer_id: int
    case_id: int
    unit_id: int
    unit_code: str
    unit_name: str
    workflow_label: str
    deadline_label: str
    due_date: date
    level: int
    target: Target
    escalated_on: date  # the day its current level fired (the due date when no firing row says)
    age_working_days: int
    body_unit_id: int | None
    body_code: str | None
    body_name: str | None


@dataclass(frozen=True)
class EscalationLevel:
    """The escalations whose highest level reached ``target``, oldest first."""

    target: Target
    rank: int
    rows: tuple[Escalation, ...]


def may_read_escalations(actor: Actor) -> bool:
    """Whether the escalations page is for ``actor``: the lead unit, supervisors, administrators, viewers."""
    return actor.role in _READERS


def open_escalations(session: Session, rt: Runtime, actor: Actor, *, language: str | None = None) -> list[EscalationLevel]:
    """Return the open escalations ``actor`` sees, highest level first (a fixed number of statements).

    Raises NotPermitted for a role the page is not for.
    """
    if not may_read_escalations(actor):
        raise NotPermitted(actor.username, "read escalations")
    language = language or rt.language
    today = local_date(rt.clock.now())
    rank = escalation_rank(rt.registry).label("rank")
    fired = (
        select(func.max(TimerFiring.fired_at))
        .where(TimerFiring.timer_id == Timer.id, TimerFiring.kind == "escalation", TimerFiring.level == Timer.level)
        .correlate(Timer)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Timer, Case.workflow, Case.workflow_version, Case.unit_id, Unit.code, Unit.name, rank, fired.label("fired"))
        .join(Case, Case.id == Timer.case_id)
        .join(Unit, Unit.id == Case.unit_id)
        .where(Timer.status == "pending", Timer.level > 0, escalation_rank(rt.registry) >= ESCALATED_RANK,
               visible_units(actor, today).covers(Case.unit_id))
        .order_by(Timer.due_date, Timer.id)
        .limit(MAX_ROWS)
    ).tuples().all()
    hierarchy = Hierarchy.load(session, today) if rows else None
    found: list[tuple[int, Escalation]] = []
    bodies: dict[int, int | None] = {}
    for timer, workflow, version, unit_id, code, name, rank_value, fired_at in rows:
        definition = rt.registry.get(workflow, version)
        target = RANK_TARGET[int(rank_value)]
        assert hierarchy is not None
        body = hierarchy.body(unit_id, target)
        bodies[timer.id] = body
        since = local_date(fired_at) if fired_at is not None else timer.due_date
        found.append((int(rank_value), Escalation(
            timer_id=timer.id, case_id=timer.case_id, unit_id=unit_id, unit_code=code, unit_name=name,
            workflow_label=definition.spec.label.get(language),
            deadline_label=definition.timer_spec(timer_key(timer)).label.get(language),
            due_date=timer.due_date, level=timer.level, target=target, escalated_on=since,
            age_working_days=max(0, working_days_left(rt.calendar, since, today)),
            body_unit_id=body, body_code=None, body_name=None,
        )))
    wanted = {b for b in bodies.values() if b is not None}
    body_unit = aliased(Unit)
    names = {
        uid: (code, name)
        for uid, code, name in session.execute(select(body_unit.id, body_unit.code, body_unit.name).where(body_unit.id.in_(wanted))).tuples()
    } if wanted else {}
    levels: dict[int, list[Escalation]] = {}
    for rank_value, row in found:
        code_name = names.get(row.body_unit_id) if row.body_unit_id is not None else None
        if code_name is not None:
            row = Escalation(**{**row.__dict__, "body_code": code_name[0], "body_name": code_name[1]})
        levels.setdefault(rank_value, []).append(row)
    return [
        EscalationLevel(RANK_TARGET[r], r, tuple(sorted(levels[r], key=lambda e: (-e.age_working_days, e.case_id))))
        for r in sorted(levels, reverse=True)
    ]


__all__ = ["Escalation", "EscalationLevel", "may_read_escalations", "open_escalations"]
