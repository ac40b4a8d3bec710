"""Is a form still good? The engine decides whether an event form loaded earlier may still be applied.

A form carries the case version it was loaded at. The version moves only on a transition
(``cases.advance``), never on a reminder or an escalation, which the sweep writes as history rows
without touching it; so the transitions since the form was loaded are the case's last
``case.version - loaded_version`` transition rows.

The form is stale when one of them moved the case to another state, or when an event that a person
fired (not ``system``, not an event only ``system`` may fire) recorded one of the form's fields: the
officer would be overwriting what someone else just wrote. A reminder, an escalation or
``mark_overdue`` (an internal transition of ``system`` that only sets ``overdue``) does not make it
stale. ``check_form`` then returns the version to pass to ``advance`` as ``expected_version``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .cases import load_case_for_update
from .clock import local_date
from .definitions import Definition
from .errors import FieldProblem, FormStale, ValidationFailed
from .models import HistoryEntry, User
from .permissions import SYSTEM, Actor, require
from .runtime import Runtime


@dataclass(frozen=True)
class Change:
    """One transition that happened after a form was loaded, labelled for the person who loaded it."""

    at: datetime
    actor: str
    actor_name: str
    event: str | None
    event_label: str | None
    from_state: str | None
    from_label: str | None
    to_state: str | None
    to_label: str | None
    moved: bool  # the case left the state the form was loaded in
    fields: tuple[str, ...]  # the labels of the form's fields it recorded


def _label(definition: Definition, state: str | None, language: str) -> str | None:
    return definition.spec.states[state].label.get(language) if state in definition.spec.states else None


def changes_since(
    session: Session, rt: Runtime, definition: Definition, case_id: int, current_version: int, loaded_version: int,
    form_fields: tuple[str, ...], *, language: str,
) -> list[Change]:
    """Return the transitions after ``loaded_version`` that make a form of ``form_fields`` stale, oldest first.

    One statement (none when the version has not moved).
    """
    missed = current_version - loaded_version
    if missed <= 0:
        return []
    rows = session.execute(
        select(HistoryEntry, User.full_name)
        .outerjoin(User, User.username == HistoryEntry.actor)
        .where(HistoryEntry.case_id == case_id, HistoryEntry.kind == "transition")
        .order_by(HistoryEntry.seq.desc())
        .limit(missed)
    ).tuples().all()
    out = []
    for row, full_name in reversed(rows):
        moved = row.to_state is not None and row.to_state != row.from_state
        spec = definition.spec.events.get(row.event or "")
        person = row.actor != SYSTEM.username and not (spec is not None and spec.system_only)
        event_fields = definition.spec.events[row.event].fields if row.event in definition.spec.events else {}
        touched = tuple(
            event_fields[name].label.get(language) for name in form_fields if name in event_fields and name in (row.data or {})
        ) if person else ()
        if not moved and not touched:
            continue
        out.append(
            Change(
                at=row.at, actor=row.actor, actor_name=full_name or row.actor, event=row.event,
                event_label=spec.label.get(language) if spec else None,
                from_state=row.from_state, from_label=_label(definition, row.from_state, language),
                to_state=row.to_state, to_label=_label(definition, row.to_state, language),
                moved=moved, fields=touched,
            )
        )
    return out


def check_form(
    session: Session, rt: Runtime, actor: Actor, case_id: int, event: str, loaded_version: object,
    *, language: str | None = None,
) -> int:
    """Return the case's version if a form for ``event`` loaded at ``loaded_version`` may still apply.

    Locks the case row for the caller's transaction (as ``advance`` does), so nothing moves it
    between this check and the ``advance`` that follows with ``expected_version`` set to the result.
    NotFound when the actor may not see the case; FormStale, with what changed, when it is stale.
    """
    if not isinstance(loaded_version, int) or isinstance(loaded_version, bool) or loaded_version < 1:
        raise ValidationFailed([FieldProblem("version", "form_version")])
    case = load_case_for_update(session, case_id)
    require(session, actor, "view", case, on=local_date(rt.clock.now()))
    if loaded_version > case.version:
        raise ValidationFailed([FieldProblem("version", "no_such_version", {"case_id": case.id, "version": loaded_version})])
    definition = rt.registry.get(case.workflow, case.workflow_version)
    spec = definition.spec.events.get(event)
    form_fields = tuple(spec.fields) if spec is not None else ()
    changes = changes_since(
        session, rt, definition, case.id, case.version, loaded_version, form_fields, language=language or rt.language
    )
    if changes:
        raise FormStale(case.id, loaded_version, case.version, changes)
    return case.version


__all__ = ["Change", "changes_since", "check_form"]
