"""The import of units (and officers' accounts) from a spreadsheet, for an administrator or the lead unit.

Upload, then a preview: every bad row with its number and reason, or what will be created and
changed; then a confirmation that commits all of it or, if the register changed meanwhile and a row
no longer fits, nothing. The files travel from the preview to the confirmation inside the form
(base64), so nothing is staged on the server and the page works without JavaScript; the
confirmation checks them again from scratch (qmsflow/engine/unitimport.py, docs/registry.md).
"""

from __future__ import annotations

import base64
import binascii
from datetime import date
from typing import Any

from flask import Blueprint, render_template, request
from flask_babel import get_locale
from flask_babel import gettext as _

from ..engine.clock import local_date
from ..engine.errors import ImportRefused
from ..engine.permissions import AdminArea, may_administer, require_admin
from ..engine.unitimport import UNIT_COLUMNS, USER_COLUMNS, apply_import, plan_import
from .access import current_user, sign_in_required
from .context import services

bp = Blueprint("unit_import", __name__, url_prefix="/admin/units/import")


def _language() -> str:
    return "en" if str(get_locale() or "vi").startswith("en") else "vi"


def _files() -> tuple[bytes | None, bytes | None, dict[str, str]]:
    """The units and users files: uploaded (preview) or carried in the form (confirmation)."""
    errors: dict[str, str] = {}
    out: list[bytes | None] = []
    for name in ("units", "users"):
        upload = request.files.get(f"{name}_file")
        carried = request.form.get(f"{name}_data", "")
        if upload is not None and upload.filename:
            out.append(upload.read())
        elif carried:
            try:
                out.append(base64.b64decode(carried, validate=True))
            except (binascii.Error, ValueError):
                errors[f"{name}_file"] = _("Tệp gửi kèm bị hỏng; hãy tải tệp lên lại.")
                out.append(None)
        else:
            out.append(None)
    if out[0] is None and "units_file" not in errors:
        errors["units_file"] = _("Hãy chọn tệp danh sách đơn vị (CSV hoặc XLSX).")
    return out[0], out[1], errors


def _as_of() -> tuple[date, dict[str, str]]:
    text = request.form.get("as_of", "").strip()
    today = local_date(services().rt.clock.now())
    if not text:
        return today, {}
    try:
        return date.fromisoformat(text), {}
    except ValueError:
        return today, {"as_of": _("Ngày không hợp lệ; nhập dạng YYYY-MM-DD.")}


def _page(status: int = 200, **values: Any) -> tuple[str, int]:
    actor = current_user().actor
    today = local_date(services().rt.clock.now())
    return render_template(
        "unit_import/index.html", unit_columns=UNIT_COLUMNS, user_columns=USER_COLUMNS,
        may_import_users=may_administer(actor, AdminArea.USERS), today=today.isoformat(),
        **({"errors": {}, "plan": None, "problems": [], "as_of": today.isoformat()} | values),
    ), status


@bp.get("/")
@sign_in_required
def index() -> Any:
    """The upload form and the column layout."""
    require_admin(current_user().actor, AdminArea.IMPORT)
    return _page()


@bp.post("/")
@sign_in_required
def submit() -> Any:
    """``preview``: check the files and show the plan; ``confirm``: commit it all, or nothing."""
    actor = current_user().actor
    require_admin(actor, AdminArea.IMPORT)
    units_data, users_data, errors = _files()
    as_of, date_errors = _as_of()
    errors |= date_errors
    if errors or units_data is None:
        return _page(400, errors=errors, as_of=request.form.get("as_of", ""))
    language = _language()
    carried = {
        "units_data": base64.b64encode(units_data).decode("ascii"),
        "users_data": base64.b64encode(users_data).decode("ascii") if users_data is not None else "",
    }
    if request.form.get("action") == "confirm":
        rt = services().rt
        try:
            with services().db.write() as session:
                result = apply_import(session, rt, actor, units_data, users_data=users_data, as_of=as_of)
        except ImportRefused as refused:
            problems = [p.render(language) for p in refused.rows]
            return _page(400, problems=problems, refused=True, as_of=as_of.isoformat())
        return render_template("unit_import/done.html", counts=result.plan.counts(), passwords=result.passwords)
    with services().db.read() as session:
        plan = plan_import(session, actor, units_data, users_data=users_data, as_of=as_of)
    problems = [p.render(language) for p in plan.problems]
    return _page(400 if problems else 200, plan=plan, problems=problems, carried=carried, as_of=as_of.isoformat())


__all__ = ["bp"]
