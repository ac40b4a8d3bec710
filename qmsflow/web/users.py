"""Users, for an administrator: list, create, edit, deactivate, issue a one-time password, unlock.

Every change goes through the engine (qmsflow/engine/users.py, signin.py), which checks the
permission and writes the admin log; a view only parses the form and renders.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from ..engine import signin
from ..engine.clock import local_date
from ..engine.errors import Conflict, FieldProblem, NotFound, ValidationFailed
from ..engine.models import Unit, User
from ..engine.permissions import AdminArea, require_admin
from ..engine.units import unit_by_code
from ..engine.users import USER_ROLES, create_user, deactivate_user, list_users, reset_password, update_user, user_by_id
from . import labels
from .access import current_user, sign_in_required
from .context import services
from .forms import field_errors, text

bp = Blueprint("users", __name__, url_prefix="/admin/users")
PAGE_SIZE = 50


def _role_options() -> list[tuple[str, str]]:
    return [(r.value, labels.role(r.value)) for r in USER_ROLES]


def _form() -> dict[str, str]:
    return {name: text(name) for name in ("username", "full_name", "email", "role", "unit_code")}


def _unit(session: Session, code: str) -> Unit | None:
    """The unit with ``code`` today, or None for an empty code; a code that names none is a field problem."""
    if not code:
        return None
    try:
        return unit_by_code(session, code, local_date(services().rt.clock.now()))
    except NotFound:
        raise ValidationFailed([FieldProblem("unit_code", f"no unit {code!r} today", "unit_unknown")]) from None


def _problems(exc: ValidationFailed) -> dict[str, str]:
    # the engine calls the unit "unit"; the form asks for its code
    return {("unit_code" if name == "unit" else name): message for name, message in field_errors(exc.problems).items()}


@bp.get("/")
@sign_in_required
def index() -> Any:
    """Every user, by username, a page at a time, with any sign-in lock."""
    page = request.args.get("page", 1, type=int) or 1
    if page < 1:
        abort(404)
    now = services().rt.clock.now()
    with services().db.read() as session:
        found = list_users(session, current_user().actor, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        if page > 1 and not found.users:
            abort(404)
        locked = signin.locks(session, [u.username for u in found.users], now)
        rows = [(_account(u) | {"role": u.role, "has_password": bool(u.password_hash)}, locked.get(u.username)) for u in found.users]
    last_page = max(1, -(-found.total // PAGE_SIZE))
    return render_template("users/index.html", rows=rows, total=found.total, page=page, last_page=last_page)


@bp.route("/new", methods=["GET", "POST"])
@sign_in_required
def new() -> Any:
    """Create a user; the new account gets a one-time password, shown once."""
    actor = current_user().actor
    require_admin(actor, AdminArea.USERS)
    values = _form() if request.method == "POST" else {"role": "unit_officer"}
    errors: dict[str, str] = {}
    if request.method == "POST":
        rt = services().rt
        try:
            with services().db.write() as session:
                unit = _unit(session, values["unit_code"])
                user = create_user(
                    session, username=values["username"], role=values["role"], unit=unit, full_name=values["full_name"],
                    email=values["email"] or None, now=rt.clock.now(), rt=rt, actor=actor,
                )
                issued = reset_password(session, user, now=rt.clock.now(), rt=rt, actor=actor)
                created = (user.id, user.username)
        except ValidationFailed as exc:
            errors = _problems(exc)
        except Conflict as exc:
            if exc.details.get("code") != "username_taken":
                raise
            errors = field_errors([FieldProblem("username", exc.message, "username_taken")])
        else:
            return render_template("users/one_time_password.html", user_id=created[0], username=created[1], password=issued,
                                   created=True)
    return render_template("users/form.html", values=values, errors=errors, roles=_role_options(), user=None), 400 if errors else 200


@bp.route("/<int:user_id>", methods=["GET", "POST"])
@sign_in_required
def edit(user_id: int) -> Any:
    """A user's details, to correct; and the actions on the account."""
    actor = current_user().actor
    rt = services().rt
    errors: dict[str, str] = {}
    values: dict[str, str] = {}
    if request.method == "POST":
        values = _form()
        try:
            with services().db.write() as session:
                user = user_by_id(session, actor, user_id)
                changed = update_user(
                    session, user, full_name=values["full_name"], email=values["email"] or None, role=values["role"],
                    unit=_unit(session, values["unit_code"]), now=rt.clock.now(), rt=rt, actor=actor,
                )
        except ValidationFailed as exc:
            errors = _problems(exc)
        else:
            flash(_("Đã lưu thay đổi.") if changed else _("Không có gì thay đổi."), "success" if changed else "info")
            return redirect(url_for("users.edit", user_id=user_id))
    with services().db.read() as session:
        user = user_by_id(session, actor, user_id)
        if not values:
            values = {"username": user.username, "full_name": user.full_name, "email": user.email or "", "role": user.role,
                      "unit_code": user.unit.code if user.unit else ""}
        values["username"] = user.username
        locked_until = signin.locks(session, [user.username], rt.clock.now()).get(user.username)
        account = _account(user)
    return render_template("users/form.html", values=values, errors=errors, roles=_role_options(), user=account,
                           locked_until=locked_until), 400 if errors else 200


def _account(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "full_name": user.full_name, "active": user.active,
            "must_change_password": user.must_change_password, "unit_name": user.unit.name if user.unit else None}


@bp.route("/<int:user_id>/deactivate", methods=["GET", "POST"])
@sign_in_required
def deactivate(user_id: int) -> Any:
    """Ask, then deactivate: the person can no longer sign in, and their sessions end now."""
    actor = current_user().actor
    rt = services().rt
    if request.method == "POST":
        try:
            with services().db.write() as session:
                deactivate_user(session, user_by_id(session, actor, user_id), now=rt.clock.now(), rt=rt, actor=actor)
        except ValidationFailed as exc:
            flash(field_errors(exc.problems).get("user", str(exc)), "error")
        else:
            flash(_("Đã khoá tài khoản. Người này không đăng nhập được nữa."), "success")
        return redirect(url_for("users.edit", user_id=user_id))
    with services().db.read() as session:
        account = _account(user_by_id(session, actor, user_id))
    return render_template("users/confirm.html", user=account, action="deactivate")


@bp.route("/<int:user_id>/password", methods=["GET", "POST"])
@sign_in_required
def password(user_id: int) -> Any:
    """Ask, then issue a one-time password (shown once) that must be changed at the next sign-in."""
    actor = current_user().actor
    rt = services().rt
    if request.method == "POST":
        try:
            with services().db.write() as session:
                user = user_by_id(session, actor, user_id)
                issued = reset_password(session, user, now=rt.clock.now(), rt=rt, actor=actor)
                username = user.username
        except ValidationFailed as exc:
            flash(field_errors(exc.problems).get("user", str(exc)), "error")
            return redirect(url_for("users.edit", user_id=user_id))
        return render_template("users/one_time_password.html", user_id=user_id, username=username, password=issued, created=False)
    with services().db.read() as session:
        account = _account(user_by_id(session, actor, user_id))
    return render_template("users/confirm.html", user=account, action="password")


@bp.post("/<int:user_id>/unlock")
@sign_in_required
def unlock(user_id: int) -> Any:
    """Lift the sign-in lock of a user's username."""
    actor = current_user().actor
    with services().db.write() as session:
        was_locked = signin.unlock(session, services().rt, actor, user_by_id(session, actor, user_id).username)
    flash(_("Đã mở khoá đăng nhập.") if was_locked else _("Tài khoản này không bị khoá đăng nhập."), "success" if was_locked else "info")
    return redirect(url_for("users.edit", user_id=user_id))


__all__ = ["bp"]
