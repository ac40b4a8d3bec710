"""Cases: list, read, open, advance by an event, history. Thin views over qmsflow/engine/cases.py and friends.

Concurrency is explicit: every case answer carries ``ETag: "<version>"``; ``If-Match`` with another
version answers 412 and ``expected_version`` 409 with the current version, both after the engine's
scope (404) and role (403) checks, in the engine's order (qmsflow/engine/cases.py).
"""

from __future__ import annotations

import re
from typing import Any

from flask import g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from ...engine import caselist
from ...engine.actions import allowed_events
from ...engine.cases import advance, get_case, open_case, open_obligations
from ...engine.cursors import decode_cursor, encode_cursor, fingerprint
from ...engine.deadlines import Deadline, case_deadlines
from ...engine.errors import NotFound
from ...engine.models import Case, HistoryEntry, Unit
from ...engine.runtime import Runtime
from ..context import services
from .core import answer, bp, ctx, idempotent, next_link, operation
from .problems import Problem
from .schemas import (
    AdvanceOut,
    CaseList,
    CaseOpen,
    CaseOut,
    CaseQuery,
    CaseSummary,
    DeadlineOut,
    EventIn,
    EventNow,
    HistoryEntryOut,
    HistoryList,
    ObligationOut,
    PageQuery,
)

_ETAG = re.compile(r'^"(\d{1,9})"$')


def deadline_out(d: Deadline) -> DeadlineOut:
    """A deadline as the API shows it."""
    return DeadlineOut(
        timer_id=d.timer_id, case_id=d.case_id, unit_id=d.unit_id, name=d.name, label=d.label, kind=d.kind, state=d.state,
        obligation=d.obligation, due_date=d.due_date, due_at=d.due_at, working_days_left=d.working_days_left, late=d.late,
        level=d.level, escalated_to=d.escalated_to.value if d.escalated_to else None,
    )


def case_out(session: Session, rt: Runtime, case: Case, language: str) -> CaseOut:
    """The case with its deadlines, open obligations and the events the caller may fire now."""
    actor = ctx().actor
    unit = session.get(Unit, case.unit_id)
    definition = rt.registry.get(case.workflow, case.workflow_version)
    return CaseOut(
        id=case.id, unit_id=case.unit_id, unit_code=unit.code if unit else "", unit_name=unit.name if unit else "",
        workflow=case.workflow, workflow_version=case.workflow_version, state=case.state,
        state_label=definition.spec.states[case.state].label.get(language), version=case.version, data=dict(case.data),
        opened_at=case.opened_at, updated_at=case.updated_at, closed_at=case.closed_at,
        deadlines=[deadline_out(d) for d in case_deadlines(session, rt, actor, case, language=language)],
        obligations=[ObligationOut(id=o.id, name=o.name, cycle=o.cycle, opened_at=o.opened_at) for o in open_obligations(session, case)],
        events=[EventNow(event=e.event, label=e.label, fields=list(e.fields), guard_holds=e.guard_holds, reason=e.reason)
                for e in allowed_events(session, rt, actor, case, language=language)],
    )


def _etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


@bp.get("/cases")
@operation(query=CaseQuery, ok={200: CaseList}, tag="cases")
def list_cases(query: CaseQuery) -> Any:
    """The cases I may see, newest first, filtered by unit, workflow, stage, late and escalated."""
    svc, c = services(), ctx()
    filters: dict[str, object] = {
        k: v for k, v in {"unit_id": query.unit, "workflow": query.workflow, "state": query.stage, "late": query.late,
                          "escalated": query.escalated}.items() if v is not None
    }
    with svc.db.read() as session:
        page = caselist.list_page(session, svc.rt, c.actor, filters, cursor=query.cursor, page_size=query.page_size,
                                  language=c.language)
    items = [
        CaseSummary(
            id=r.id, unit_id=r.unit_id, unit_code=r.unit_code, unit_name=r.unit_name, workflow=r.workflow,
            workflow_version=r.workflow_version, state=r.state, state_label=r.state_label, version=r.version,
            opened_at=r.opened_at, updated_at=r.updated_at, closed_at=r.closed_at, late=r.late,
            escalated_to=r.escalated_to.value if r.escalated_to else None,
        )
        for r in page.items
    ]
    return answer(CaseList(items=items, next_cursor=page.next_cursor), headers=next_link(page.next_cursor))


@bp.get("/cases/<int:case_id>")
@operation(ok={200: CaseOut}, problems=(404,), tag="cases")
def read_case(case_id: int) -> Any:
    """A case: state, version (also the ETag), data, deadlines, obligations and the events I may fire now."""
    svc, c = services(), ctx()
    with svc.db.read() as session:
        case = get_case(session, svc.rt, c.actor, case_id)
        out = case_out(session, svc.rt, case, c.language)
    return answer(out, headers=_etag(out.version))


@bp.post("/cases")
@operation(body=CaseOpen, ok={201: CaseOut}, problems=(403, 404, 409, 415, 422), tag="cases")
@idempotent
def open_a_case(body: CaseOpen) -> Any:
    """Open a case of a workflow for a unit (start fields in ``data``, staged uploads in ``evidence``)."""
    svc, c = services(), ctx()
    with svc.db.write() as session:
        unit = session.get(Unit, body.unit_id)
        if unit is None:
            raise NotFound("unit", body.unit_id)
        if body.workflow not in {d.name for d in svc.rt.registry.definitions()}:
            raise Problem("field-invalid", f"no workflow {body.workflow!r}", {"errors": [
                {"field": "workflow", "code": "unknown_workflow", "params": {"value": body.workflow}, "message": "unknown workflow"}]})
        case_id = open_case(session, svc.rt, c.actor, unit, body.workflow, body.data, evidence=body.evidence).id
    with svc.db.read() as session:
        out = case_out(session, svc.rt, get_case(session, svc.rt, c.actor, case_id), c.language)
    return answer(out, 201, {**_etag(out.version), "Location": f"{request.script_root}/api/v1/cases/{out.id}"})


def _if_match() -> int | None:
    """The version in ``If-Match`` (one strong tag, or ``*`` for any); 400 when it is not one."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    found = _ETAG.match(raw.strip())
    if found is None:
        raise Problem("invalid-parameter", 'If-Match takes one strong ETag of this API, e.g. "7"', {"errors": [
            {"field": "If-Match", "code": "etag", "params": {}, "message": 'one strong tag such as "7"'}]})
    return int(found.group(1))


@bp.post("/cases/<int:case_id>/events")
@operation(body=EventIn, ok={200: AdvanceOut}, problems=(403, 404, 409, 412, 415, 422), tag="cases")
@idempotent
def fire_event(case_id: int, body: EventIn) -> Any:
    """Advance a case by an event; 404 scope, 403 role, 412 If-Match, 409 expected_version, 422 state, guard or fields."""
    svc, c = services(), ctx()
    matched = _if_match()
    if matched is not None and body.expected_version is not None and matched != body.expected_version:
        raise Problem("precondition-mismatch", f"If-Match says version {matched}, expected_version {body.expected_version}")
    g.if_match = matched is not None
    expected = matched if matched is not None else body.expected_version
    with svc.db.write() as session:
        done = advance(session, svc.rt, c.actor, case_id, body.event, body.data, expected_version=expected,
                       evidence=body.evidence, comment=body.comment)
        moved = (done.event, done.from_state, done.to_state)
    g.if_match = False
    # The case is read again after the commit, so the write lock (all of SQLite's) is not held while the
    # answer is built; body and ETag come from the same read (a later event may already show in both).
    with svc.db.read() as session:
        out = case_out(session, svc.rt, get_case(session, svc.rt, c.actor, case_id), c.language)
    return answer(AdvanceOut(event=moved[0], from_state=moved[1], to_state=moved[2], case=out), headers=_etag(out.version))


@bp.get("/cases/<int:case_id>/history")
@operation(query=PageQuery, ok={200: HistoryList}, problems=(404,), tag="cases")
def case_history(case_id: int, query: PageQuery) -> Any:
    """A case's history, oldest first (the chained rows as recorded)."""
    svc, c = services(), ctx()
    marker = fingerprint("history", c.actor.username, case_id)
    after = decode_cursor(query.cursor, marker) or 0
    with svc.db.read() as session:
        case = get_case(session, svc.rt, c.actor, case_id)
        rows = list(session.scalars(
            select(HistoryEntry).where(HistoryEntry.case_id == case.id, HistoryEntry.seq > after)
            .order_by(HistoryEntry.seq).limit(query.page_size + 1)
        ))
        items = []
        for row in rows[: query.page_size]:
            data = dict(row.data or {})
            evidence = data.pop("_evidence", []) or []
            comment = data.pop("_comment", None)
            items.append(HistoryEntryOut(seq=row.seq, at=row.at, kind=row.kind, actor=row.actor, event=row.event,
                                         from_state=row.from_state, to_state=row.to_state, data=data,
                                         evidence=list(evidence), comment=comment))
    cursor = encode_cursor(items[-1].seq, marker) if len(rows) > query.page_size else None
    return answer(HistoryList(items=items, next_cursor=cursor), headers=next_link(cursor))


__all__ = ["case_out", "deadline_out"]
