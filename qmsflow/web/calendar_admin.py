"""The calendar overrides page: a year's days off and make-up working days; add or remove one, preview, apply.

Thin: qmsflow/engine/calendar_admin.py checks the permission, computes the preview and applies the
change through the engine's replan (each moved deadline noted in its case's history, the change in
the administrative log). Nothing is written to a file.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..engine import calendar_admin
from ..engine.calendar_admin import OverrideChange
from ..engine.clock import local_date
from ..engine.errors import Conflict, FieldProblem, ValidationFailed
from .access import current_user, sign_in_required
from .context import services
from .eventforms import parse_day
from .forms import field_errors, text
from .i18n import current_language

bp = Blueprint("calendar_admin", __name__, url_prefix="/admin/calendar")


def _year() -> int:
    year = request.args.get("year", type=int) or local_date(services().rt.clock.now()).year
    if not 2000 <= year <= 2100:
        abort(404)
    return year


def _change() -> OverrideChange:
    problems: list[FieldProblem] = []
    action = text("action", 8)
    if action not in ("add", "remove"):
        problems.append(FieldProblem("action", "required"))
    try:
        day = parse_day(text("day", 10))
    except ValueError:
        problems.append(FieldProblem("day", "not_a_date"))
    kind = text("kind", 8)
    if action == "add" and kind not in ("off", "working"):
        problems.append(FieldProblem("kind", "required"))
    if problems:
        raise ValidationFailed(problems)
    return OverrideChange(action=action, day=day, working=kind == "working", name=text("name", 200))


def _index(year: int, values: dict[str, str], errors: dict[str, str], status: int = 200) -> Any:
    with services().db.read() as session:
        rows = calendar_admin.year_overrides(session, current_user().actor, year)
    return render_template("calendar_admin/index.html", year=year, rows=rows, values=values, errors=errors), status


@bp.get("/")
@sign_in_required
def index() -> Any:
    """The year's overrides, and the form to add one."""
    return _index(_year(), {"action": "add", "kind": "off"}, {})


@bp.post("/preview")
@sign_in_required
def preview() -> Any:
    """Every deadline the change would move; nothing is stored yet."""
    values = {n: text(n) for n in ("action", "day", "kind", "name")}
    try:
        change = _change()
        with services().db.read() as session:
            found = calendar_admin.preview(session, services().rt, current_user().actor, change, language=current_language())
    except ValidationFailed as exc:
        return _index(_year(), values, field_errors(exc.problems), 400)
    return render_template("calendar_admin/preview.html", preview=found, values=values)


@bp.post("/apply")
@sign_in_required
def apply() -> Any:
    """Store the change and re-plan the deadlines it moves."""
    values = {n: text(n) for n in ("action", "day", "kind", "name")}
    try:
        change = _change()
        report = calendar_admin.apply(services().db, services().rt, current_user().actor, change,
                                      expected_fingerprint=text("fingerprint", 64) or None)
    except ValidationFailed as exc:
        return _index(_year(), values, field_errors(exc.problems), 400)
    except Conflict:
        return _index(_year(), values, {"day": _("Lịch đã thay đổi từ khi xem trước. Hãy xem trước lại.")}, 409)
    flash(_("Đã lưu lịch và dời %(count)s hạn.", count=len(report.moved)))
    return redirect(url_for("calendar_admin.index", year=change.day.year))


__all__ = ["bp"]
