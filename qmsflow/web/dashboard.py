"""The dashboard (``/dashboard``): the engine's ``province_summary`` as of a day, every figure a link.

Charts are bars drawn on the server as SVG (no script, so the page works without JavaScript and
under the CSP), each beside the table it is drawn from; every number links to the units list with
the figure's filter, whose count is the figure. ``?as_of=YYYY-MM-DD`` (the date picker) recomputes
everything as it stood at the end of that day.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, render_template, request, url_for

from ..engine.errors import ValidationFailed
from ..engine.province import Figure, province_summary, summary_day
from .access import current_user, sign_in_required
from .context import services
from .provincetext import kind_label, rank_label, stage_label

bp = Blueprint("dashboard", __name__)


def figure_url(figure: Figure) -> str:
    """The units list that shows exactly the units ``figure`` counts."""
    query = urlencode(figure.filter)
    return url_for("units.index") + (f"?{query}" if query else "")


@bp.get("/dashboard")
@sign_in_required
def index() -> Any:
    """Where the reader's province (or subtree, or unit) stands, as of a day."""
    raw = (request.args.get("as_of") or "").strip()
    as_of: date | None = None
    error = None
    if raw:
        try:
            as_of = date.fromisoformat(raw)
        except ValueError:
            error = raw
    future = False
    try:
        summary_day(services().rt, as_of)
    except ValidationFailed:
        error, as_of, future = raw, None, True  # a 400 that says so, never an empty dashboard of a day to come
    with services().db.read() as session:
        summary = province_summary(session, services().rt, current_user().actor, as_of=as_of)
    status = 400 if error else 200
    return render_template(
        "dashboard/index.html", s=summary, error=error, url=figure_url, stage_label=stage_label,
        kind_label=kind_label, rank_label=rank_label, chosen=as_of, future=future,
    ), status


__all__ = ["bp", "figure_url"]
