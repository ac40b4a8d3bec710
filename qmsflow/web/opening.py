"""Opening cases: the lead opens a corrective action from signed inspection minutes (with their PDF),
and a lifecycle case for a unit that has none. ``cases.open_case`` decides; these pages ask it."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from ..engine.cases import open_case
from ..engine.clock import local_date
from ..engine.errors import Conflict, FieldProblem, GuardFailed, NotFound, NotPermitted, ValidationFailed
from ..engine.models import Unit
from ..engine.opening import units_without_open_case
from ..engine.permissions import may_open
from ..engine.units import unit_by_code
from .access import current_user, sign_in_required
from .cases import stage_files
from .context import services
from .eventforms import EVIDENCE, Submission, build_fields, check_fields, field_messages, file_message, read_fields
from .i18n import current_language

bp = Blueprint("opening", __name__)
CORRECTIVE, LIFECYCLE = "corrective_action", "qms_lifecycle"


class _Refused(Exception):
    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("refused")
        self.problems = problems


def _require_opener() -> None:
    if not may_open(current_user().actor):
        raise NotPermitted(current_user().username, "open cases")


def _unit(session: Session, code: str) -> Unit:
    try:
        return unit_by_code(session, code.strip(), local_date(services().rt.clock.now()))
    except NotFound:
        raise _Refused([FieldProblem("unit", "unit_unknown", {"code": code.strip()})]) from None


def _unit_message(problems: list[FieldProblem]) -> str | None:
    for p in problems:
        if p.field == "unit":
            if p.code == "open_exists":
                return _("Đơn vị này đã có hồ sơ đang mở của quy trình này (hồ sơ số %(id)s).", id=p.params.get("case_id", ""))
            if p.code == "required":
                return _("Hãy nhập mã đơn vị.")
            return _("Không có đơn vị nào mang mã này vào hôm nay. Hãy kiểm tra lại mã đơn vị.")
    return None


def _conflict(exc: Conflict, field: str) -> FieldProblem:
    return FieldProblem(field, "open_exists", {"case_id": exc.details.get("case_id", "")})


@bp.route("/cases/new/corrective-action", methods=["GET", "POST"])
@sign_in_required
def corrective_action() -> Any:
    """Open a corrective action after an inspection, from the signed minutes and their PDF."""
    _require_opener()
    rt, language = services().rt, current_language()
    specs = rt.registry.latest(CORRECTIVE).spec.start_fields
    submission: Submission | None = None
    problems: list[FieldProblem] = []
    code = request.form.get("unit", "") if request.method == "POST" else request.args.get("unit", "")
    if request.method == "POST":
        submission = read_fields(specs, request.form)
        try:
            with services().db.write() as session:
                problems = check_fields(specs, submission, local_date(rt.clock.now()))
                if not code.strip():
                    problems.append(FieldProblem("unit", "required"))
                if not any(f.filename for f in request.files.getlist(EVIDENCE)):
                    problems.append(FieldProblem(EVIDENCE, "minutes_required"))
                if problems:
                    raise _Refused(problems)
                unit = _unit(session, code)
                try:
                    uploads = stage_files(session)
                    case = open_case(session, rt, current_user().actor, unit, CORRECTIVE, submission.data, evidence=uploads)
                except (GuardFailed, ValidationFailed) as exc:
                    raise _Refused(exc.problems) from None
                except Conflict as exc:
                    raise _Refused([_conflict(exc, "minutes_number")]) from None
                case_id = case.id
        except _Refused as refused:
            problems = refused.problems
        else:
            flash(_("Đã mở hồ sơ khắc phục số %(id)s.", id=case_id), "success")
            return redirect(url_for("cases.show", case_id=case_id))
    errors = field_messages(specs, problems, language)
    if any(p.code == "open_exists" for p in problems):
        errors["minutes_number"] = _("Đơn vị này đã có hồ sơ khắc phục cho biên bản này (hồ sơ số %(id)s).",
                                     id=next(p.params.get("case_id", "") for p in problems if p.code == "open_exists"))
    file_error = next(
        (_("Hãy đính kèm biên bản kiểm tra đã ký (tệp PDF).") if p.code == "minutes_required" else file_message(p) or p.render(current_language())
         for p in problems if p.field in (EVIDENCE, "file", "name")), None,
    )
    fields = build_fields(specs, "ca", language, submission, errors)
    summary = [(f.input_id, f.error) for f in fields if f.error]
    unit_error = _unit_message(problems)
    if unit_error:
        summary.insert(0, ("ca--unit", unit_error))
    if file_error:
        summary.append(("ca--evidence", file_error))
    status = 400 if problems else 200
    return render_template(
        "opening/corrective_action.html", fields=fields, unit_code=code, unit_error=unit_error, file_error=file_error, summary=summary,
    ), status


@bp.route("/cases/new/lifecycle", methods=["GET", "POST"])
@sign_in_required
def lifecycle() -> Any:
    """Open the QMS lifecycle case of a unit that has none open."""
    _require_opener()
    rt = services().rt
    problems: list[FieldProblem] = []
    code = request.form.get("unit", "")
    if request.method == "POST":
        try:
            with services().db.write() as session:
                if not code.strip():
                    raise _Refused([FieldProblem("unit", "required")])
                unit = _unit(session, code)
                try:
                    case = open_case(session, rt, current_user().actor, unit, LIFECYCLE)
                except Conflict as exc:
                    raise _Refused([_conflict(exc, "unit")]) from None
                except (GuardFailed, NotFound) as exc:
                    raise _Refused(getattr(exc, "problems", [FieldProblem("unit", "unit_unknown", {"code": code.strip()})])) from None
                case_id = case.id
        except _Refused as refused:
            problems = refused.problems
        else:
            flash(_("Đã mở hồ sơ HTQLCL số %(id)s.", id=case_id), "success")
            return redirect(url_for("cases.show", case_id=case_id))
    search = request.args.get("q", "").strip() or None
    with services().db.read() as session:
        try:
            choices = units_without_open_case(session, rt, current_user().actor, LIFECYCLE, search=search, limit=50)
        except ValidationFailed:
            choices, search = [], None
    unit_error = _unit_message(problems)
    return render_template(
        "opening/lifecycle.html", choices=choices, search=search or "", unit_code=code, unit_error=unit_error,
    ), 400 if problems else 200


__all__ = ["bp"]
