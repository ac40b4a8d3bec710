"""The one permission function: may this actor see, open, or fire this event on this case?

Every layer (CLI, web pages, JSON API, the sweep) asks here, so they cannot disagree. A case the
actor may not see is reported as not found, never as forbidden, so scope does not leak.

Scope is SQL: ``visible_units`` gives the units an actor sees on a day as a ``Scope`` whose
``covers(column)`` is a condition lists, counts, searches, exports and the inbox put in their own
statement (a recursive subquery over the effective-dated hierarchy and the units' successions, or
``true()`` province-wide), so a page of N cases costs one statement, not N checks. ``decide`` asks the same ``Scope``.

Administration (users, tokens, webhooks, the calendar, units, contacts, imports, reorganisations)
is decided here too, by ``may_administer`` / ``require_admin``, never by a role check in a view.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from sqlalchemy import ColumnElement, Select, SQLColumnExpression, false, literal, select, true
from sqlalchemy.orm import Session

from .definitions import Definition, Role
from .errors import FieldProblem, NotFound, NotPermitted, ValidationFailed
from .models import Case, User
from .units import visible_select


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in user, or the scheduler acting on a timer."""

    username: str
    role: Role
    unit_id: int | None = None

    @classmethod
    def of(cls, user: User) -> Actor:
        """Return the actor for a stored user."""
        return cls(username=user.username, role=Role(user.role), unit_id=user.unit_id)


SYSTEM = Actor(username="system", role=Role.SYSTEM)

# The operator at the server's command line: whoever runs ``qmsflow`` there holds the database
# credentials and the history key, so nothing they could do through the engine is out of reach.
CONSOLE = Actor(username="console", role=Role.ADMIN)


class Decision(StrEnum):
    """The answer: allowed, or which error a refusal maps to."""

    ALLOWED = "allowed"
    NOT_VISIBLE = "not_visible"
    NOT_PERMITTED = "not_permitted"


@dataclass(frozen=True)
class Scope:
    """The units an actor sees on one day: every unit, none, or the actor's own unit and a subquery's.

    ``unit_id`` is the actor's own unit, always in scope; ``units`` the units seen from it (its
    subtree, its predecessors and theirs: ``units.visible_select``).
    """

    everything: bool = False
    unit_id: int | None = None
    units: Select[tuple[int]] | None = None

    def covers(self, unit_id: SQLColumnExpression[int]) -> ColumnElement[bool]:
        """Return the SQL condition that ``unit_id`` (a column or expression) is in the scope."""
        if self.everything:
            return true()
        if self.units is not None:
            return unit_id.in_(self.units)
        if self.unit_id is not None:
            return unit_id == self.unit_id
        return false()

    def contains(self, session: Session, unit_id: int) -> bool:
        """Return whether the scope holds ``unit_id``: at most one statement.

        Fast path: everything, nothing and the actor's own unit need no database, because ``covers``
        of such a scope holds for them whatever the hierarchy. Any other unit is asked of the
        database, with the same subquery the lists join (tests/engine/test_scope.py pins the two
        together), so an officer's transition on its own unit's case costs no scope query.
        """
        if self.everything or (self.unit_id is not None and self.unit_id == unit_id):
            return True
        if self.units is None:
            return False
        return bool(session.scalar(select(self.covers(literal(unit_id)))))


def visible_units(actor: Actor, on: date) -> Scope:
    """Return the units ``actor`` may see on ``on``, as SQL to put in a statement (no query runs)."""
    if actor.role in (Role.ADMIN, Role.LEAD, Role.SYSTEM):
        return Scope(everything=True)
    if actor.unit_id is None:
        return Scope(everything=actor.role is Role.VIEWER)
    # an officer sees its unit, a supervisor its subtree; both also their predecessors, as they stood
    below = actor.role is not Role.UNIT_OFFICER
    return Scope(unit_id=actor.unit_id, units=visible_select(actor.unit_id, on, below=below))


def scope_clause(actor: Actor, on: date, unit_id: SQLColumnExpression[int]) -> ColumnElement[bool]:
    """Return the condition that ``unit_id`` is visible to ``actor`` on ``on`` (for a WHERE or a JOIN)."""
    return visible_units(actor, on).covers(unit_id)


def visible_unit_ids(session: Session, actor: Actor, on: date) -> set[int] | None:
    """Deprecated: join ``scope_clause`` instead. Return the visible unit ids; None means every unit."""
    warnings.warn("visible_unit_ids builds a Python set; join scope_clause instead", DeprecationWarning, stacklevel=2)
    scope = visible_units(actor, on)
    if scope.everything:
        return None
    if scope.units is None:
        return {scope.unit_id} if scope.unit_id is not None else set()
    return set(session.scalars(scope.units))


def may_fire(actor: Actor, definition: Definition, event: str) -> bool:
    """Return whether the actor's role may fire ``event`` (scope aside); an unknown event may be tried."""
    if actor.role is Role.VIEWER:
        return False
    spec = definition.spec.events.get(event)
    return spec is None or actor.role in spec.roles


def may_open(actor: Actor) -> bool:
    """Return whether the actor's role may open cases (scope aside): the lead unit and administrators."""
    return actor.role in (Role.ADMIN, Role.LEAD)


def decide(
    session: Session,
    actor: Actor,
    action: str,
    *,
    unit_id: int,
    on: date,
    definition: Definition | None = None,
    event: str | None = None,
) -> Decision:
    """Decide ``action`` ("view", "open" or "fire") by ``actor`` on a case of ``unit_id``.

    For "fire", an event the definition does not know is allowed here (any non-viewer may try it);
    the engine then reports it as an invalid transition, after the version check.
    """
    if not visible_units(actor, on).contains(session, unit_id):
        return Decision.NOT_VISIBLE
    if action == "view":
        return Decision.ALLOWED
    if actor.role is Role.VIEWER:
        return Decision.NOT_PERMITTED
    if action == "open":
        return Decision.ALLOWED if may_open(actor) else Decision.NOT_PERMITTED
    if action == "fire":
        if definition is None or event is None:
            raise ValueError("firing needs the definition and the event")
        return Decision.ALLOWED if may_fire(actor, definition, event) else Decision.NOT_PERMITTED
    raise ValueError(f"unknown action {action!r}")


def require(
    session: Session,
    actor: Actor,
    action: str,
    case: Case,
    *,
    on: date,
    definition: Definition | None = None,
    event: str | None = None,
) -> None:
    """Raise NotFound or NotPermitted unless ``decide`` allows the action on ``case``."""
    decision = decide(session, actor, action, unit_id=case.unit_id, on=on, definition=definition, event=event)
    if decision is Decision.NOT_VISIBLE:
        raise NotFound("case", case.id)
    if decision is Decision.NOT_PERMITTED:
        what = f"fire {event!r}" if action == "fire" else action
        raise NotPermitted(actor.username, what, case.id)


class AdminArea(StrEnum):
    """What administration touches."""

    USERS = "users"
    TOKENS = "tokens"
    WEBHOOKS = "webhooks"
    CALENDAR = "calendar"
    UNITS = "units"
    CONTACTS = "contacts"
    IMPORT = "import"
    REORGANISATION = "reorganisation"


# Accounts and the machinery (tokens, webhooks, the calendar every deadline counts on) are the
# administrator's; the register of units and its changes are the lead unit's work as well.
_ADMINISTERED_BY: dict[AdminArea, frozenset[Role]] = {
    AdminArea.USERS: frozenset({Role.ADMIN}),
    AdminArea.TOKENS: frozenset({Role.ADMIN}),
    AdminArea.WEBHOOKS: frozenset({Role.ADMIN}),
    AdminArea.CALENDAR: frozenset({Role.ADMIN}),
    AdminArea.UNITS: frozenset({Role.ADMIN, Role.LEAD}),
    AdminArea.CONTACTS: frozenset({Role.ADMIN, Role.LEAD}),
    AdminArea.IMPORT: frozenset({Role.ADMIN, Role.LEAD}),
    AdminArea.REORGANISATION: frozenset({Role.ADMIN, Role.LEAD}),
}


def _area(what: AdminArea | str) -> AdminArea:
    try:
        return AdminArea(what)
    except ValueError:
        raise ValidationFailed(
            [FieldProblem("what", "unknown_admin_area", {"value": repr(what), "choices": [a.value for a in AdminArea]})]
        ) from None


def may_administer(actor: Actor, what: AdminArea | str) -> bool:
    """Return whether ``actor`` may change ``what`` (users, tokens, webhooks, calendar, units, ...)."""
    return actor.role in _ADMINISTERED_BY[_area(what)]


def require_admin(actor: Actor, what: AdminArea | str) -> None:
    """Raise NotPermitted unless ``actor`` may change ``what``."""
    if not may_administer(actor, what):
        raise NotPermitted(actor.username, f"administer {_area(what).value}")


__all__ = [
    "CONSOLE",
    "SYSTEM",
    "Actor",
    "AdminArea",
    "Decision",
    "Scope",
    "decide",
    "may_administer",
    "may_fire",
    "may_open",
    "require",
    "require_admin",
    "scope_clause",
    "visible_unit_ids",
    "visible_units",
]
