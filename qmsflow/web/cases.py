"""The case page: unit, workflow and stage, the diagram, the timeline, deadlines, and one form per event.

Firing an event goes, in one write transaction: the case in scope (else 404, nothing read about
it), the event among those the person may fire now, the form not stale (the engine decides:
qmsflow/engine/staleness.py), the fields, the evidence files (staged through the engine's evidence
service), then ``advance`` with the version the check returned. Any refusal rolls the whole
transaction back, and the page is shown again with the reason and what was typed.

``withdraw`` and ``change_scope`` first show a check-your-answers page; an event with no fields
fired from My work first shows a confirmation page. Both send the same form to the same place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast
from urllib.parse import quote

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import Session
from werkzeug.wsgi import wrap_file

from ..bootstrap import evidence_store
from ..engine import evidence as evidence_files
from ..engine.actions import AllowedEvent, allowed_events
from ..engine.cases import advance, get_case
from ..engine.clock import local_date
from ..engine.deadlines import case_deadlines
from ..engine.errors import FieldProblem, FormStale, GuardFailed, NotFound, NotPermitted, StaleVersion, ValidationFailed
from ..engine.models import Case, Unit
from ..engine.mywork import CONFIRM_ON_CASE_PAGE
from ..engine.permissions import may_fire
from ..engine.staleness import Change, check_form
from ..engine.timeline import case_timeline
from . import casetext
from .access import current_user, sign_in_required
from .context import services
from .diagram import passed_states, render_diagram
from .eventforms import EVIDENCE, VERSION, Submission, all_problems, build_form, read_submission
from .i18n import current_language

bp = Blueprint("cases", __name__)

# supersede is the reorganisation service's (a later issue): never a form on the case page
RESERVED_EVENTS = frozenset({"supersede"})
UPLOAD_FIELD = "upload"  # ids of files staged at the check-your-answers step


@dataclass
class Refusal:
    """Why a submitted form was not applied, to show on the page again."""

    event: str
    submission: Submission | None = None
    problems: list[FieldProblem] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)  # the form was stale
    stale: bool = False


class _Refused(Exception):
    """Raised inside the write transaction so that it rolls back; carries the refusal out."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.event)
        self.refusal = refusal


def _events(session: Session, case: Case, language: str) -> list[AllowedEvent]:
    rt, actor = services().rt, current_user().actor
    return [a for a in allowed_events(session, rt, actor, case, language=language) if a.event not in RESERVED_EVENTS]


def _page_context(session: Session, case_id: int, refusal: Refusal | None = None, *, forms: bool = True) -> dict[str, Any]:
    """Everything the case page and its print view show (NotFound out of scope)."""
    rt, actor, language = services().rt, current_user().actor, current_language()
    case = get_case(session, rt, actor, case_id)
    unit = session.get(Unit, case.unit_id)
    definition = rt.registry.get(case.workflow, case.workflow_version)
    timeline = case_timeline(session, rt, actor, case.id, language=language)
    state = definition.spec.states[case.state]
    diagram = render_diagram(
        definition, language, current=case.state, passed=passed_states([(e.from_state, e.to_state) for e in timeline]),
        title=_("Sơ đồ quy trình: %(name)s", name=definition.spec.label.get(language)),
        current_text=_("Bước hiện tại"), passed_text=_("Đã qua"), anywhere_text=_("Từ mọi bước"),
        id_prefix=f"case{case.id}",
    )
    event_forms = []
    if forms:
        for allowed in _events(session, case, language):
            mine = refusal is not None and refusal.event == allowed.event and not refusal.stale
            event_forms.append(
                build_form(
                    definition, allowed, version=case.version, language=language,
                    submission=refusal.submission if mine and refusal else None,
                    problems=refusal.problems if mine and refusal else (),
                )
            )
    return {
        "case": case, "unit": unit, "definition": definition, "state": state,
        "workflow_label": definition.spec.label.get(language), "state_label": state.label.get(language),
        "timeline": list(reversed(timeline)), "deadlines": case_deadlines(session, rt, actor, case, language=language),
        "diagram": diagram, "forms": event_forms, "refusal": refusal, "text": casetext,
    }


@bp.get("/cases/<int:case_id>")
@sign_in_required
def show(case_id: int) -> Any:
    """The case page."""
    with services().db.read() as session:
        return render_template("cases/case.html", **_page_context(session, case_id))


@bp.get("/cases/<int:case_id>/print")
@sign_in_required
def print_view(case_id: int) -> Any:
    """The case page without forms, laid out for paper."""
    with services().db.read() as session:
        return render_template("cases/print.html", **_page_context(session, case_id, forms=False))


def _fireable(session: Session, case_id: int, event: str) -> Case:
    """The case in scope (else 404) whose definition has ``event`` for the person's role.

    An unknown or reserved event is a 404; one the role may not fire, on a case the person sees, a 403.
    """
    rt, actor = services().rt, current_user().actor
    case = get_case(session, rt, actor, case_id)
    definition = rt.registry.get(case.workflow, case.workflow_version)
    if event not in definition.spec.events or event in RESERVED_EVENTS:
        raise NotFound("event", event)
    if not may_fire(actor, definition, event):
        raise NotPermitted(actor.username, f"fire {event!r}", case.id)
    return case


def _allowed_now(session: Session, case: Case, event: str) -> AllowedEvent | None:
    """The event as the person may fire it from the case's state now (None: not from this state)."""
    return next((a for a in _events(session, case, current_language()) if a.event == event), None)


def _version() -> int:
    raw = request.form.get(VERSION, "")
    if not raw.isdigit() or int(raw) < 1:
        raise ValidationFailed([FieldProblem(VERSION, "form_version")])
    return int(raw)


def stage_files(session: Session) -> list[int]:
    """Stage the submitted files (and take the ids staged at a check step) as the person's uploads."""
    rt, actor = services().rt, current_user().actor
    store = evidence_store(services().settings)
    ids = []
    for raw in request.form.getlist(UPLOAD_FIELD):
        if not raw.isdigit():
            raise ValidationFailed([FieldProblem(EVIDENCE, "upload_id")])
        ids.append(int(raw))
    for upload in request.files.getlist(EVIDENCE):
        if not upload.filename:
            continue
        ids.append(evidence_files.stage(session, store, actor, upload.filename, cast(BinaryIO, upload.stream), rt.clock.now()).id)
    return ids


def _refused_page(case_id: int, refusal: Refusal) -> tuple[str, int]:
    with services().db.read() as session:  # rendered inside: the read session's end expires what it loaded
        return render_template("cases/case.html", **_page_context(session, case_id, refusal)), 409 if refusal.stale else 400


def _check(session: Session, case_id: int, event: str) -> tuple[Case, AllowedEvent, int, Submission, list[int]]:
    """Everything before ``advance``: scope, event, staleness, fields, files. Raises _Refused or NotFound.

    Staleness comes before "may fire it now": a form loaded in another state is stale (409, saying
    what changed), not a missing page.
    """
    rt, actor = services().rt, current_user().actor
    case = _fireable(session, case_id, event)
    definition = rt.registry.get(case.workflow, case.workflow_version)
    submission = read_submission(definition, event, request.form)
    try:
        version = check_form(session, rt, actor, case.id, event, _version(), language=current_language())
    except FormStale as stale:
        raise _Refused(Refusal(event, submission, changes=[c for c in stale.changes if isinstance(c, Change)], stale=True)) from None
    allowed = _allowed_now(session, case, event)
    if allowed is None:  # not from this state, though the form is not stale: a hand-made request
        raise NotFound("event", event)
    problems = all_problems(definition, event, submission, local_date(rt.clock.now()))
    if problems:
        raise _Refused(Refusal(event, submission, problems))
    try:
        uploads = stage_files(session)
    except ValidationFailed as exc:
        raise _Refused(Refusal(event, submission, exc.problems)) from None
    return case, allowed, version, submission, uploads


@bp.post("/cases/<int:case_id>/events/<event>")
@sign_in_required
def fire(case_id: int, event: str) -> Any:
    """Fire ``event`` through its form; all or nothing."""
    rt = services().rt
    try:
        with services().db.write() as session:
            case, allowed, version, submission, uploads = _check(session, case_id, event)
            try:
                advance(
                    session, rt, current_user().actor, case.id, event, submission.data, expected_version=version,
                    evidence=uploads, comment=submission.comment or None,
                )
            except GuardFailed as exc:
                raise _Refused(Refusal(event, submission, exc.problems)) from None
            except StaleVersion:
                raise _Refused(Refusal(event, submission, stale=True)) from None
            except ValidationFailed as exc:  # an upload no longer claimable (expired, someone else's)
                raise _Refused(Refusal(event, submission, exc.problems)) from None
    except _Refused as refused:
        return _refused_page(case_id, refused.refusal)
    flash(_("Đã ghi nhận: %(event)s.", event=allowed.label), "success")
    return redirect(url_for("cases.show", case_id=case_id) + "#lich-su")


@bp.post("/cases/<int:case_id>/events/<event>/check")
@sign_in_required
def check_answers(case_id: int, event: str) -> Any:
    """Check your answers before an event that is hard to undo (withdraw, change of scope)."""
    if event not in CONFIRM_ON_CASE_PAGE:
        abort(404)
    try:
        with services().db.write() as session:  # commits the staged files only; the case is not touched
            case, allowed, version, submission, uploads = _check(session, case_id, event)
            definition = services().rt.registry.get(case.workflow, case.workflow_version)
            language = current_language()
            answers = [
                (spec.label.get(language), casetext.value_text(submission.data.get(name, "")))
                for name, spec in definition.spec.events[event].fields.items()
            ]
            unit = session.get(Unit, case.unit_id)
            # the ids of files staged at an earlier step come from the form: only the person's own
            # uploads, unexpired and unattached, are named back (the same check advance makes)
            claimed = evidence_files.check_claim(session, current_user().actor, case.unit_id, uploads, services().rt.clock.now())
            files = [upload.name for upload in claimed]
            return render_template(
                "cases/confirm.html", case=case, unit=unit, allowed=allowed, version=version, answers=answers,
                raw=submission.raw, comment=submission.comment, uploads=uploads, files=files,
            )
    except _Refused as refused:
        return _refused_page(case_id, refused.refusal)


@bp.get("/cases/<int:case_id>/events/<event>/confirm")
@sign_in_required
def confirm(case_id: int, event: str) -> Any:
    """Ask before firing an event that has no fields (the button on My work leads here)."""
    with services().db.read() as session:
        case = _fireable(session, case_id, event)
        allowed = _allowed_now(session, case, event)
        if allowed is None or not allowed.enabled or allowed.fields or event in CONFIRM_ON_CASE_PAGE:
            # not now, or a form on the case page: the case page says which and why
            return redirect(url_for("cases.show", case_id=case_id) + f"#su-kien-{event}")
        unit = session.get(Unit, case.unit_id)
        return render_template(
            "cases/confirm.html", case=case, unit=unit, allowed=allowed, version=case.version, answers=[], raw={},
            comment="", uploads=[], files=[],
        )


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback name and the real one as RFC 5987 ``filename*``."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\/;' else "_" for c in name) or "tep"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@bp.get("/evidence/<int:attachment_id>")
@sign_in_required
def download(attachment_id: int) -> Any:
    """An evidence file, to a person who may see its case; 404 otherwise."""
    rt = services().rt
    with services().db.read() as session:
        upload, stream = evidence_files.open_attachment(
            session, evidence_store(services().settings), current_user().actor, attachment_id, rt.clock.now()
        )
        name, content_type, size = upload.name, upload.content_type, upload.size
    response = Response(wrap_file(request.environ, stream), mimetype=content_type, direct_passthrough=True)
    response.headers["Content-Disposition"] = content_disposition(name)
    response.headers["Content-Length"] = str(size)
    response.headers["Cache-Control"] = "private, no-store"
    return response


__all__ = ["RESERVED_EVENTS", "bp", "content_disposition", "stage_files"]
