"""What a person may do on a case now: each event they may fire, and whether its guard holds.

A page shows every event here as a button, disabled with the guard's message when the guard fails
on the case's current data, so the reason is the same words ``advance`` would refuse with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from .clock import local_date
from .definitions import Definition
from .models import Case
from .permissions import Actor, may_fire, require
from .runtime import Runtime


@dataclass(frozen=True)
class AllowedEvent:
    """An event the actor may fire from the case's state.

    ``guard_holds`` is None when the guard reads a field the event itself records: only the
    submitted form can tell, and ``advance`` checks it then.
    """

    event: str
    label: str
    fields: tuple[str, ...]
    guard_holds: bool | None
    reason: str | None  # the guard's message when it does not hold

    @property
    def enabled(self) -> bool:
        """Whether the button can be pressed (the guard holds, or depends on what is submitted)."""
        return self.guard_holds is not False


def allowed_events(
    session: Session, rt: Runtime, actor: Actor, case: Case, *, language: str | None = None
) -> list[AllowedEvent]:
    """Return the events ``actor`` may fire on ``case`` now, in definition order; NotFound if out of scope.

    The role rule is ``permissions.may_fire``, the one ``advance`` applies; the guard is evaluated on
    the case's data with the event's fixed ``set`` values, as ``advance`` merges them.
    """
    require(session, actor, "view", case, on=local_date(rt.clock.now()))
    definition = rt.registry.get(case.workflow, case.workflow_version)
    return events_now(actor, definition, case.state, case.data, language or rt.language)


def events_now(
    actor: Actor, definition: Definition, state: str, data: Mapping[str, Any], language: str
) -> list[AllowedEvent]:
    """Return the events ``actor``'s role may fire from ``state`` on ``data`` (no query: scope is the caller's)."""
    out = []
    for name in definition.events_from(state):
        if not may_fire(actor, definition, name):
            continue
        spec = definition.spec.events[name]
        guard = definition.guards.get(name)
        holds: bool | None = True
        reason = None
        if guard is not None:
            if guard.fields() & set(spec.fields):
                holds = None
            else:
                holds = guard.evaluate({**data, **spec.set})
                if not holds:
                    reason = spec.guard_message.get(language) if spec.guard_message else guard.source
        out.append(AllowedEvent(name, spec.label.get(language), tuple(spec.fields), holds, reason))
    return out


__all__ = ["AllowedEvent", "allowed_events", "events_now"]
