"""Administering units and their contacts: create, change from a date, contacts, parent from a date, end.

Every change goes through qmsflow/engine/unitadmin.py, which checks the permission (the lead unit
and administrators) and writes the administrative log; a refused form rolls its transaction back,
so nothing changes, and the page comes back with the reason next to the field and the values kept.
A parent change shows what moves (the unit, those below it, their open cases) before it is made.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from ..engine import unitadmin
from ..engine.clock import local_date
from ..engine.errors import Conflict, FieldProblem, NotFound, ValidationFailed
from ..engine.permissions import AdminArea, require_admin
from ..engine.unitpage import unit_page
from ..engine.units import UnitKind, unit_by_code
from .access import current_user, sign_in_required
from .context import services
from .eventforms import parse_day
from .forms import field_errors, text
from .i18n import current_language
from .unit_page import contact_role_label, kind_label

bp = Blueprint("units_admin", __name__, url_prefix="/admin/units")


def _kinds() -> list[tuple[str, str]]:
    return [(k.value, kind_label(k.value)) for k in UnitKind]


def _day(name: str, problems: list[FieldProblem]) -> date | None:
    raw = text(name, 10)
    if not raw:
        problems.append(FieldProblem(name, "required"))
        return None
    try:
        return parse_day(raw)
    except ValueError:
        problems.append(FieldProblem(name, "not_a_date"))
        return None


def _by_code(session: Session, code: str, on: date | None, name: str) -> int | None:
    if not code:
        return None
    try:
        return unit_by_code(session, code, on or local_date(services().rt.clock.now())).id
    except NotFound:
        raise ValidationFailed([FieldProblem(name, "unit_unknown", {"code": code})]) from None


def _errors(exc: ValidationFailed | Conflict, field: str) -> dict[str, str]:
    if isinstance(exc, Conflict):
        return {field: str(exc)}
    renamed = {"parent": "parent_code", "parent_id": "parent_code"}
    return {renamed.get(k, k): v for k, v in field_errors(exc.problems).items()}


def _page(unit_id: int) -> Any:
    with services().db.read() as session:
        return unit_page(session, services().rt, current_user().actor, unit_id, language=current_language())


@bp.route("/new", methods=["GET", "POST"])
@sign_in_required
def new() -> Any:
    """Register a unit."""
    actor, rt = current_user().actor, services().rt
    require_admin(actor, AdminArea.UNITS)
    values = {n: text(n) for n in ("code", "name", "kind", "valid_from", "parent_code")} if request.method == "POST" else {"kind": "commune_pc"}
    errors: dict[str, str] = {}
    if request.method == "POST":
        problems: list[FieldProblem] = []
        start = _day("valid_from", problems)
        try:
            if problems:
                raise ValidationFailed(problems)
            assert start is not None
            with services().db.write() as session:
                unit = unitadmin.create(session, rt, actor, code=values["code"], name=values["name"], kind=values["kind"],
                                        valid_from=start, parent_id=_by_code(session, values["parent_code"], start, "parent_code"))
                created = unit.id
        except (ValidationFailed, Conflict) as exc:
            errors = _errors(exc, "code")
        else:
            flash(_("Đã thêm đơn vị."))
            return redirect(url_for("units_admin.edit", unit_id=created))
    return render_template("units_admin/new.html", values=values, errors=errors, kinds=_kinds()), 400 if errors else 200


@bp.route("/<int:unit_id>", methods=["GET", "POST"])
@sign_in_required
def edit(unit_id: int) -> Any:
    """Change the unit's name, code or kind from a date; its contacts are on the same page."""
    actor, rt = current_user().actor, services().rt
    require_admin(actor, AdminArea.UNITS)
    page = _page(unit_id)
    values = {"code": page.code, "name": page.name, "kind": page.kind, "on": ""}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = {n: text(n) for n in ("code", "name", "kind", "on")}
        problems: list[FieldProblem] = []
        on = _day("on", problems)
        try:
            if problems:
                raise ValidationFailed(problems)
            assert on is not None
            with services().db.write() as session:
                unitadmin.change(session, rt, actor, unit_id, on=on, name=values["name"], code=values["code"], kind=values["kind"])
        except (ValidationFailed, Conflict) as exc:
            errors = _errors(exc, "code")
        else:
            flash(_("Đã lưu thay đổi của đơn vị."))
            return redirect(url_for("units_admin.edit", unit_id=unit_id))
    return render_template("units_admin/edit.html", page=page, values=values, errors=errors, kinds=_kinds(),
                           contact_errors={}, contact_values={}, contact_role_label=contact_role_label,
                           kind_label=kind_label), 400 if errors else 200


@bp.post("/<int:unit_id>/contacts/<role>")
@sign_in_required
def contact(unit_id: int, role: str) -> Any:
    """Set the unit's head or ISO officer."""
    actor, rt = current_user().actor, services().rt
    require_admin(actor, AdminArea.CONTACTS)
    if role not in ("head", "iso_officer"):
        raise NotFound("contact role", role)
    values = {n: text(f"{role}_{n}") for n in ("name", "email", "phone")}
    try:
        with services().db.write() as session:
            unitadmin.set_contact(session, rt, actor, unit_id, role, values["name"], values["email"] or None, values["phone"] or None)
    except ValidationFailed as exc:
        page = _page(unit_id)
        base = {"code": page.code, "name": page.name, "kind": page.kind, "on": ""}
        errors = {f"{role}_{k}": v for k, v in field_errors(exc.problems).items()}
        return render_template("units_admin/edit.html", page=page, values=base, errors={}, kinds=_kinds(),
                               contact_errors=errors, contact_values={role: values}, contact_role_label=contact_role_label,
                               kind_label=kind_label), 400
    flash(_("Đã lưu người liên hệ."))
    return redirect(url_for("units_admin.edit", unit_id=unit_id))


@bp.route("/<int:unit_id>/parent", methods=["GET", "POST"])
@sign_in_required
def parent(unit_id: int) -> Any:
    """Change the unit's parent from a date (past or future): first what moves, then, confirmed, the change."""
    actor, rt = current_user().actor, services().rt
    require_admin(actor, AdminArea.UNITS)
    page = _page(unit_id)
    values = {n: text(n) for n in ("parent_code", "on")} if request.method == "POST" else {}
    errors: dict[str, str] = {}
    preview = None
    if request.method == "POST":
        problems: list[FieldProblem] = []
        on = _day("on", problems)
        if not values["parent_code"]:
            problems.append(FieldProblem("parent_code", "required"))
        confirmed = request.form.get("confirm") == "1"
        try:
            if problems:
                raise ValidationFailed(problems)
            assert on is not None
            with services().db.write() as session:
                new_parent = _by_code(session, values["parent_code"], on, "parent_code")
                assert new_parent is not None
                if confirmed:
                    unitadmin.change_parent(session, rt, actor, unit_id, parent_id=new_parent, on=on)
                else:
                    preview = unitadmin.preview_parent_change(session, rt, actor, unit_id, parent_id=new_parent, on=on)
        except (ValidationFailed, Conflict) as exc:
            errors = _errors(exc, "on")
        else:
            if confirmed:
                flash(_("Đã đổi cơ quan quản lý cấp trên."))
                return redirect(url_for("units_admin.edit", unit_id=unit_id))
    return render_template("units_admin/parent.html", page=page, values=values, errors=errors, preview=preview), 400 if errors else 200


@bp.route("/<int:unit_id>/end", methods=["GET", "POST"])
@sign_in_required
def end(unit_id: int) -> Any:
    """End the unit's validity on a date; refused while it has open cases."""
    actor, rt = current_user().actor, services().rt
    require_admin(actor, AdminArea.UNITS)
    page = _page(unit_id)
    values = {"on": text("on")} if request.method == "POST" else {}
    errors: dict[str, str] = {}
    if request.method == "POST":
        problems: list[FieldProblem] = []
        on = _day("on", problems)
        try:
            if problems:
                raise ValidationFailed(problems)
            assert on is not None
            with services().db.write() as session:
                unitadmin.end(session, rt, actor, unit_id, on=on)
        except (ValidationFailed, Conflict) as exc:
            errors = _errors(exc, "on")
        else:
            flash(_("Đã kết thúc hiệu lực của đơn vị."))
            return redirect(url_for("units_admin.edit", unit_id=unit_id))
    return render_template("units_admin/end.html", page=page, values=values, errors=errors), 400 if errors else 200


__all__ = ["bp"]
