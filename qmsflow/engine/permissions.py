"""The one permission function: may this actor see, open, or fire this event on this case?

Every layer (CLI, web pages, JSON API, the sweep) asks here, so they cannot disagree. A case the
actor may not see is reported as not found, never as forbidden, so scope does not leak.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from sqlalchemy.orm import Session

from .definitions import Definition, Role
from .errors import NotFound, NotPermitted
from .models import Case, User
from .units import subtree_ids


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


class Decision(StrEnum):
    """The answer: allowed, or which error a refusal maps to."""

    ALLOWED = "allowed"
    NOT_VISIBLE = "not_visible"
    NOT_PERMITTED = "not_permitted"


def visible_unit_ids(session: Session, actor: Actor, on: date) -> set[int] | None:
    """Return the ids of units the actor may see on ``on``; None means every unit."""
    if actor.role in (Role.ADMIN, Role.LEAD, Role.SYSTEM):
        return None
    if actor.unit_id is None:
        return None if actor.role is Role.VIEWER else set()
    if actor.role is Role.UNIT_OFFICER:
        return {actor.unit_id}
    return subtree_ids(session, actor.unit_id, on)


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
    visible = visible_unit_ids(session, actor, on)
    if visible is not None and unit_id not in visible:
        return Decision.NOT_VISIBLE
    if action == "view":
        return Decision.ALLOWED
    if actor.role is Role.VIEWER:
        return Decision.NOT_PERMITTED
    if action == "open":
        return Decision.ALLOWED if actor.role in (Role.ADMIN, Role.LEAD) else Decision.NOT_PERMITTED
    if action == "fire":
        if definition is None or event is None:
            raise ValueError("firing needs the definition and the event")
        spec = definition.spec.events.get(event)
        if spec is None:
            return Decision.ALLOWED
        return Decision.ALLOWED if actor.role in spec.roles else Decision.NOT_PERMITTED
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


__all__ = ["SYSTEM", "Actor", "Decision", "decide", "require", "visible_unit_ids"]
