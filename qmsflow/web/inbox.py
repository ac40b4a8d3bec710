"""The inbox: reminders and escalations routed to me, newest first (the engine's ``inbox`` service)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext

from ..engine.inbox import inbox_page, mark_all_read, mark_read
from .access import current_user, sign_in_required
from .context import services

bp = Blueprint("inbox", __name__)
PAGE_SIZE = 50


@bp.get("/inbox")
@sign_in_required
def index() -> Any:
    """My inbox; ``?unread=1`` for unread items only; ``?after=`` the cursor of the next page."""
    unread_only = request.args.get("unread") == "1"
    cursor = request.args.get("after") or None
    with services().db.read() as session:
        page = inbox_page(session, services().rt, current_user().actor, unread_only=unread_only, cursor=cursor, page_size=PAGE_SIZE)
    return render_template("inbox/index.html", page=page, unread_only=unread_only, first_page=cursor is None)


@bp.post("/inbox/<int:item_id>/read")
@sign_in_required
def read(item_id: int) -> Any:
    """Mark one item read (404 for an item that is not mine); back to the inbox, or on to its case."""
    with services().db.write() as session:
        mark_read(session, services().rt, current_user().actor, [item_id])
    case_id = request.form.get("case", "")
    if case_id.isdigit():
        return redirect(url_for("cases.show", case_id=int(case_id)))
    return redirect(url_for("inbox.index"))


@bp.post("/inbox/read-all")
@sign_in_required
def read_all() -> Any:
    """Mark every item of my inbox read."""
    with services().db.write() as session:
        count = mark_all_read(session, services().rt, current_user().actor)
    if count:
        flash(ngettext("Đã đánh dấu %(num)s thông báo là đã đọc.", "Đã đánh dấu %(num)s thông báo là đã đọc.", count), "success")
    else:
        flash(_("Không còn thông báo nào chưa đọc."), "info")
    return redirect(url_for("inbox.index"))


__all__ = ["bp"]
