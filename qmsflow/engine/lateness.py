""""Late" and "escalated", defined once, as SQL that lists, counts, dashboards and exports share.

Late: a pending timer whose due instant has passed (``due_at <= now``, the instant the sweep fires
its due step). It counts against the unit whose role fires the event that ends the timer: a state
timer ends when an event leaves the state, an obligation's when an event fulfils it. Events that may
fire from every state (``from: "*"``: supersede, withdraw) are reorganisation exits, not the work the
deadline waits for, and ``system`` fires only timer actions, so neither decides. A corrective action
waiting for the lead's review is therefore the lead unit's lateness, not the unit's.

Escalated: the highest ladder level the sweep has fired on a pending timer (``Timer.level``), when
its target is the supervisor or above (the unit head alone is a reminder to the unit itself).

The rules depend on the definitions, so each is a SQL ``CASE`` built from the registry: constant in
size per definition, one statement whatever the number of cases.

A timer whose whole ladder has fired is ``done`` (qmsflow/engine/sweep.py) and no longer pending, so
it stops counting as late here although nothing ended it; that is the sweep's definition of done.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, literal, or_, select
from sqlalchemy.orm import aliased

from .clock import local_date
from .definitions import Definition, Role, Target
from .models import Case, Timer, UnitParent, UnitVersion
from .permissions import Scope
from .registry import Registry


class Party(StrEnum):
    """Whose lateness a timer is: the case's unit, its supervisor (parent of the day) or the lead unit."""

    UNIT = "unit"
    SUPERVISOR = "supervisor"
    LEAD = "lead"


# The escalation order (DOMAIN.md); "escalated" starts at the supervisor.
TARGET_RANK: dict[Target, int] = {Target.UNIT_HEAD: 1, Target.SUPERVISOR: 2, Target.LEAD: 3, Target.PROVINCIAL_PC: 4}
RANK_TARGET = {rank: target for target, rank in TARGET_RANK.items()}
ESCALATED_RANK = TARGET_RANK[Target.SUPERVISOR]


def timer_keys(definition: Definition) -> Iterator[str]:
    """Yield the key of every timer a definition can start: "state.timer" and "obligation:<name>"."""
    for state, spec in definition.spec.states.items():
        for name in spec.timers:
            yield f"{state}.{name}"
    for name in definition.spec.obligations:
        yield f"obligation:{name}"


def ending_events(definition: Definition, key: str) -> list[str]:
    """Return the events that end a timer, leaving "*" events (reorganisation exits) aside."""
    if key.startswith("obligation:"):
        return list(definition.spec.obligations[key.split(":", 1)[1]].fulfilled_by)
    state = key.split(".", 1)[0]
    leaving = {t.event for t in definition.transitions if t.source == state and t.dest not in (None, state)}
    return [e for e in definition.spec.events if e in leaving and definition.spec.events[e].from_ != "*"]


def responsible_party(definition: Definition, key: str) -> Party:
    """Return whose lateness the timer ``key`` is, from the roles of the events that end it.

    The nearest party wins when several may end it (a unit officer before a supervisor before the
    lead); a timer only ``system`` or a "*" event ends counts against the unit.
    """
    roles = {role for event in ending_events(definition, key) for role in definition.spec.events[event].roles}
    if Role.UNIT_OFFICER in roles or not roles - {Role.SYSTEM}:
        return Party.UNIT
    if Role.SUPERVISOR in roles:
        return Party.SUPERVISOR
    return Party.LEAD


def escalation_target(definition: Definition, key: str, level: int) -> Target | None:
    """Return the target of ladder level ``level`` (1-based) of a timer, None for level 0."""
    ladder = definition.ladder(key)
    return ladder[level - 1].target if 0 < level <= len(ladder) else None


def _is_timer(definition: Definition, key: str) -> ColumnElement[bool]:
    """SQL: the row pair (Case, Timer) is the timer ``key`` of ``definition``."""
    if key.startswith("obligation:"):
        kind = and_(Timer.kind == "obligation", Timer.name == key.split(":", 1)[1])
    else:
        state, name = key.split(".", 1)
        kind = and_(Timer.kind == "state", Timer.state == state, Timer.name == name)
    return and_(Case.workflow == definition.name, Case.workflow_version == definition.version, kind)


def is_late(now: datetime) -> ColumnElement[bool]:
    """SQL over Timer: the timer is pending and its due instant has passed at ``now``."""
    return and_(Timer.status == "pending", Timer.due_at <= now)


def responsible_unit(registry: Registry, on: date) -> ColumnElement[int]:
    """SQL over Case and Timer: the id of the unit the timer's lateness counts against on ``on``."""
    lead = aliased(UnitVersion)
    link = aliased(UnitParent)
    lead_id = (
        select(lead.unit_id)
        .where(lead.is_lead.is_(True), lead.valid_from <= on, or_(lead.valid_to.is_(None), lead.valid_to > on))
        .order_by(lead.unit_id)
        .limit(1)
        .scalar_subquery()
    )
    parent_id = (
        select(link.parent_id)
        .where(link.unit_id == Case.unit_id, link.valid_from <= on, or_(link.valid_to.is_(None), link.valid_to > on))
        .limit(1)
        .scalar_subquery()
    )
    whens: list[tuple[ColumnElement[bool], ColumnElement[int]]] = []
    for definition in registry.definitions():
        for key in timer_keys(definition):
            party = responsible_party(definition, key)
            if party is Party.LEAD:
                whens.append((_is_timer(definition, key), lead_id))
            elif party is Party.SUPERVISOR:
                whens.append((_is_timer(definition, key), parent_id))
    if not whens:
        return Case.unit_id.expression
    return case(*whens, else_=Case.unit_id)


def escalation_rank(registry: Registry, level_column: ColumnElement[int] | None = None) -> ColumnElement[int]:
    """SQL over Case and Timer: the rank (TARGET_RANK) of the highest level fired on the timer; 0 for none.

    ``level_column`` replaces ``Timer.level`` (the province's view as of a date gives the level fired then).
    """
    fired = Timer.level.expression if level_column is None else level_column
    whens: list[tuple[ColumnElement[bool], int]] = []
    for definition in registry.definitions():
        for key in timer_keys(definition):
            for level, rung in enumerate(definition.ladder(key), start=1):
                whens.append((and_(_is_timer(definition, key), fired == level), TARGET_RANK[rung.target]))
    if not whens:
        return literal(0)
    return case(*whens, else_=0)


def timers_of_party(registry: Registry, party: Party) -> ColumnElement[bool]:
    """SQL over Case and Timer: the timer's lateness is ``party``'s (e.g. the lead's reviews)."""
    matches = [
        _is_timer(definition, key)
        for definition in registry.definitions()
        for key in timer_keys(definition)
        if responsible_party(definition, key) is party
    ]
    return or_(*matches) if matches else literal(False)


def late_timers(registry: Registry, now: datetime) -> Select[tuple[int, int, int]]:
    """Return SELECT (timer id, case id, id of the unit it counts against) of every late timer.

    Dashboards group it by unit; a scope filters it with ``scope.covers(<its unit_id column>)``.
    """
    return (
        select(Timer.id, Timer.case_id, responsible_unit(registry, local_date(now)).label("unit_id"))
        .join(Case, Case.id == Timer.case_id)
        .where(is_late(now))
    )


def case_is_late(registry: Registry, now: datetime, against: Scope | None = None) -> ColumnElement[bool]:
    """SQL correlated with Case: the case has a late timer counted against a unit in ``against``.

    Without ``against``, any late timer of the case. The enclosing statement must not itself select
    from ``timers`` (the EXISTS correlates on Case only).
    """
    counted = against.covers(responsible_unit(registry, local_date(now))) if against is not None else None
    condition = and_(Timer.case_id == Case.id, is_late(now))
    if counted is not None:
        condition = and_(condition, counted)
    return exists().where(condition)


def case_escalation_rank(registry: Registry) -> ColumnElement[int]:
    """SQL correlated with Case: the highest escalation rank among the case's pending timers (0 for none)."""
    return func.coalesce(
        select(func.max(escalation_rank(registry)))
        .where(Timer.case_id == Case.id, Timer.status == "pending")
        .correlate(Case)
        .scalar_subquery(),
        0,
    )


def case_is_escalated(registry: Registry) -> ColumnElement[bool]:
    """SQL correlated with Case: a pending timer of the case has escalated to the supervisor or above."""
    return exists().where(Timer.case_id == Case.id, Timer.status == "pending", escalation_rank(registry) >= ESCALATED_RANK)


__all__ = [
    "ESCALATED_RANK",
    "RANK_TARGET",
    "TARGET_RANK",
    "Party",
    "case_escalation_rank",
    "case_is_escalated",
    "case_is_late",
    "ending_events",
    "escalation_rank",
    "escalation_target",
    "is_late",
    "late_timers",
    "responsible_party",
    "responsible_unit",
    "timer_keys",
    "timers_of_party",
]
