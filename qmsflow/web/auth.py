"""Signing in and out, changing one's password, choosing the language."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from ..engine import signin
from ..engine.errors import FieldProblem, TooManyAttempts, ValidationFailed
from ..engine.models import User
from ..engine.users import change_password as change_own_password
from .access import (
    allowed_before_password_change,
    begin_session,
    current_user,
    end_session,
    home_url,
    keep_session_after_password_change,
    public,
    safe_next,
    sign_in_required,
)
from .context import services
from .forms import field_errors, text
from .i18n import LANGUAGES, format_clock, format_day
from .security import client_address

bp = Blueprint("auth", __name__)


def _refusal(refused: TooManyAttempts) -> str:
    when = {"time": format_clock(refused.until), "day": format_day(refused.until)}
    if refused.by == "address":
        return _("Có quá nhiều lần đăng nhập sai từ máy này. Hãy thử lại sau %(time)s ngày %(day)s.", **when)
    return _(
        "Tài khoản này tạm khoá vì nhập sai mật khẩu 5 lần trong 15 phút. Hãy thử lại sau %(time)s ngày %(day)s, "
        "hoặc nhờ quản trị hệ thống mở khoá.", **when,
    )


@bp.route("/sign-in", methods=["GET", "POST"])
@public
def sign_in() -> Any:
    """The sign-in page; on success, back where the person was going (or My work)."""
    target = safe_next(request.values.get("next"))
    if g.user is not None and request.method == "GET":
        return redirect(target or home_url())
    error = None
    username = ""
    if request.method == "POST":
        username = text("username", 64)
        password = request.form.get("password", "")
        with services().db.write() as db_session:
            outcome = signin.sign_in(db_session, services().rt, username, password, client_address())
            user: User | None = outcome.user
            if user is not None:
                begin_session(user)
                must_change = user.must_change_password
        if user is not None:
            if must_change:
                flash(_("Bạn đang dùng mật khẩu dùng một lần. Hãy đặt mật khẩu mới để tiếp tục."), "warning")
                return redirect(url_for("auth.change_password"))
            return redirect(target or home_url())
        error = _refusal(outcome.refused) if outcome.refused else _("Tên đăng nhập hoặc mật khẩu không đúng.")
    return render_template("auth/sign_in.html", error=error, username=username, next=target or "")


@bp.post("/sign-out")
@public
def sign_out() -> Any:
    """End this session."""
    if g.user is not None:
        end_session()
        flash(_("Bạn đã đăng xuất."), "info")
    return redirect(url_for("auth.sign_in"))


@bp.route("/account/password", methods=["GET", "POST"])
@sign_in_required
@allowed_before_password_change
def change_password() -> Any:
    """Change my password (the one-time password an administrator issued, too); my other sessions end."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        current, new, confirm = (request.form.get(n, "") for n in ("current_password", "new_password", "confirm_password"))
        try:
            if new != confirm:
                raise ValidationFailed([FieldProblem("confirm_password", "the two new passwords differ", "password_mismatch")])
            with services().db.write() as db_session:
                user = db_session.get(User, current_user().id)
                assert user is not None  # loaded for this request a moment ago
                change_own_password(db_session, user, current=current, new=new, now=services().rt.clock.now(), rt=services().rt)
                keep_session_after_password_change(user)
        except ValidationFailed as exc:
            errors = field_errors(exc.problems)
        else:
            flash(_("Đã đổi mật khẩu. Các phiên đăng nhập khác của bạn đã kết thúc."), "success")
            return redirect(home_url())
    return render_template("auth/change_password.html", errors=errors), 400 if errors else 200


@bp.post("/language")
@public
def language() -> Any:
    """Switch the language (kept in the session; see qmsflow/web/i18n.py) and come back to the page."""
    chosen = request.form.get("lang")
    if chosen in LANGUAGES:
        session["lang"] = chosen
    return redirect(safe_next(request.form.get("next")) or url_for("auth.sign_in"))


__all__ = ["bp"]
