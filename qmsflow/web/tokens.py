"""API tokens in the web app: each person makes and revokes their own; an administrator everyone's.

Every change goes through qmsflow/engine/tokens.py, which decides who may and writes the admin log;
a new token is shown once, on the page that made it (only its hash is stored). docs/api.md.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..engine.clock import LOCAL_TZ
from ..engine.errors import FieldProblem, NotFound, ValidationFailed
from ..engine.permissions import AdminArea, may_administer
from ..engine.tokens import create_token, list_tokens, revoke_token
from ..engine.users import user_by_name
from .access import current_user, sign_in_required
from .context import services
from .forms import field_errors, text

bp = Blueprint("tokens", __name__, url_prefix="/tokens")


def _rows() -> list[dict[str, Any]]:
    with services().db.read() as session:
        return [
            {"id": t.id, "prefix": t.prefix, "owner": owner, "name": t.name, "created_at": t.created_at, "expires_at": t.expires_at,
             "last_used_at": t.last_used_at, "revoked_at": t.revoked_at}
            for t, owner in list_tokens(session, current_user().actor)
        ]


def _expiry(raw: str) -> datetime | None:
    """The end of the local day given (dd/mm/yyyy or yyyy-mm-dd), or None when empty."""
    if not raw:
        return None
    for fmt in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            day = datetime.strptime(raw, fmt).date()
            break
        except ValueError:
            continue
    else:
        raise ValidationFailed([FieldProblem("expires", "date_format")])
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=LOCAL_TZ)


@bp.route("/", methods=["GET", "POST"])
@sign_in_required
def index() -> Any:
    """My tokens (everyone's for an administrator), and a form to make one."""
    user = current_user()
    admin = may_administer(user.actor, AdminArea.TOKENS)
    values = {"name": "", "expires": "", "username": ""}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = {"name": text("name", 100), "expires": text("expires", 10), "username": text("username", 64)}
        rt = services().rt
        try:
            with services().db.write() as session:
                owner = user_by_name(session, values["username"] if admin and values["username"] else user.username)
                token, secret = create_token(session, rt, user.actor, owner, name=values["name"], expires_at=_expiry(values["expires"]))
                made = {"id": token.id, "owner": owner.username, "name": token.name}
        except NotFound:
            errors = {"username": _("Không có người dùng này.")}
        except ValidationFailed as exc:
            errors = field_errors(exc.problems)
        else:
            return render_template("tokens/created.html", token=made, secret=secret)
    return render_template("tokens/index.html", rows=_rows(), admin=admin, values=values, errors=errors), 400 if errors else 200


@bp.post("/<int:token_id>/revoke")
@sign_in_required
def revoke(token_id: int) -> Any:
    """Revoke a token now: every request with it is refused from then on."""
    with services().db.write() as session:
        was_active = revoke_token(session, services().rt, current_user().actor, token_id)
    flash(_("Đã thu hồi mã truy cập.") if was_active else _("Mã truy cập này đã bị thu hồi trước đó."), "success" if was_active else "info")
    return redirect(url_for("tokens.index"))


__all__ = ["bp"]
