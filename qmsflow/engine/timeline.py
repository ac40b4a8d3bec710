"""A case's timeline: its history as a person reads it, in their language, in two statements.

Each row of the append-only history becomes an entry with the actor's full name, the event and
state labels of the case's definition, the recorded fields with their labels, the deadline or
obligation it concerns, and the evidence files it references. Evidence is held in the row's data
under the reserved key ``_evidence``: a list of {attachment_id, sha256, name, type, size}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .cases import COMMENT_KEY, get_case
from .definitions import Definition, FieldSpec
from .models import HistoryEntry, User
from .permissions import Actor
from .runtime import Runtime

EVIDENCE_KEY = "_evidence"


@dataclass(frozen=True)
class RecordedField:
    """A value a row recorded, with the label of the field that asked for it."""

    name: str
    label: str
    value: Any


@dataclass(frozen=True)
class EvidenceRef:
    """A file a row references; download it by ``attachment_id`` (never by hash)."""

    attachment_id: int | str | None
    sha256: str
    name: str
    type: str
    size: int | None


@dataclass(frozen=True)
class TimelineEntry:
    """One history row, labelled."""

    seq: int
    at: datetime
    kind: str  # opened | transition | reminder | escalated | obligation_opened | ... (history.py)
    actor: str
    actor_name: str
    event: str | None
    event_label: str | None
    from_state: str | None
    from_label: str | None
    to_state: str | None
    to_label: str | None
    about: str | None  # the label of the deadline or obligation a timer or obligation row concerns
    fields: tuple[RecordedField, ...] = ()
    evidence: tuple[EvidenceRef, ...] = ()
    comment: str | None = None  # what the person wrote with it
    details: dict[str, Any] = field(default_factory=dict)  # other data, unlabelled (timer step, level, ...)


def _evidence(raw: object) -> tuple[EvidenceRef, ...]:
    if not isinstance(raw, list):
        return ()
    refs = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        size = item.get("size")
        refs.append(
            EvidenceRef(
                attachment_id=item.get("attachment_id"),
                sha256=str(item.get("sha256", "")),
                name=str(item.get("name", "")),
                type=str(item.get("type", "")),
                size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            )
        )
    return tuple(refs)


def _about(definition: Definition, data: dict[str, Any], language: str) -> str | None:
    obligation = data.get("obligation")
    if isinstance(obligation, str) and obligation in definition.spec.obligations:
        return definition.spec.obligations[obligation].label.get(language)
    timer = data.get("timer")
    if isinstance(timer, str):
        for state in definition.spec.states.values():
            if timer in state.timers:
                return state.timers[timer].label.get(language)
        if timer in definition.spec.obligations:
            return definition.spec.obligations[timer].timer.label.get(language)
    return None


def _entry(definition: Definition, row: HistoryEntry, full_name: str | None, language: str) -> TimelineEntry:
    spec = definition.spec
    labelled: dict[str, FieldSpec] = {}
    if row.kind == "opened":
        labelled = spec.start_fields
    elif row.event and row.event in spec.events and row.kind == "transition":
        labelled = spec.events[row.event].fields
    data = dict(row.data or {})
    evidence = _evidence(data.pop(EVIDENCE_KEY, None))
    comment = data.pop(COMMENT_KEY, None)
    recorded = tuple(RecordedField(n, labelled[n].label.get(language), data.pop(n)) for n in list(labelled) if n in data)

    def state_label(state: str | None) -> str | None:
        return spec.states[state].label.get(language) if state and state in spec.states else None

    event_label = spec.events[row.event].label.get(language) if row.event and row.event in spec.events else None
    return TimelineEntry(
        seq=row.seq, at=row.at, kind=row.kind, actor=row.actor, actor_name=full_name or row.actor,
        event=row.event, event_label=event_label, from_state=row.from_state, from_label=state_label(row.from_state),
        to_state=row.to_state, to_label=state_label(row.to_state), about=_about(definition, data, language),
        fields=recorded, evidence=evidence, comment=comment if isinstance(comment, str) else None, details=data,
    )


def case_timeline(
    session: Session, rt: Runtime, actor: Actor, case_id: int, *, language: str | None = None
) -> list[TimelineEntry]:
    """Return the case's history, oldest first, labelled in ``language``; NotFound if out of scope."""
    case = get_case(session, rt, actor, case_id)
    definition = rt.registry.get(case.workflow, case.workflow_version)
    language = language or rt.language
    rows = session.execute(
        select(HistoryEntry, User.full_name)
        .outerjoin(User, User.username == HistoryEntry.actor)
        .where(HistoryEntry.case_id == case.id)
        .order_by(HistoryEntry.seq)
    ).tuples()
    return [_entry(definition, row, name, language) for row, name in rows]


__all__ = ["EVIDENCE_KEY", "EvidenceRef", "RecordedField", "TimelineEntry", "case_timeline"]
