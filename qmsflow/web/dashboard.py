"""The dashboard (``/dashboard``): the engine's ``province_summary`` as of a day, every figure a link.

Each chart is drawn by Chart.js (static/js/charts.js) from JSON the server puts in a data attribute,
built from the same figures as the table beside it: labels, counts and each bar's units-list link,
so clicking a bar opens the list the table's number links to. Without JavaScript the tables are the
page. Every number links to the units list with the figure's filter, whose count is the figure. ``?as_of=YYYY-MM-DD`` (the date picker) recomputes
everything as it stood at the end of that day.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, render_template, request, url_for
from markupsafe import Markup

from ..engine.errors import ValidationFailed
from ..engine.province import STAGES, Figure, province_summary, summary_day
from .access import current_user, sign_in_required
from .context import services
from .provincetext import kind_label, rank_label, stage_label

bp = Blueprint("dashboard", __name__)


def figure_url(figure: Figure) -> str:
    """The units list that shows exactly the units ``figure`` counts."""
    query = urlencode(figure.filter)
    return url_for("units.index") + (f"?{query}" if query else "")


def _text(label: str) -> str:
    """A label as plain text: a template's ``_()`` gives HTML-escaped Markup, and tojson escapes it again."""
    return label.unescape() if isinstance(label, Markup) else str(label)


def bar_chart(rows: list[tuple[str, Figure]], title: str, *, horizontal: bool = True) -> dict[str, Any]:
    """One series of bars, a bar per ``(label, figure)`` row of the table beside it."""
    return {
        "title": _text(title), "horizontal": horizontal, "stacked": False, "labels": [_text(label) for label, _ in rows],
        "series": [{"key": "", "label": _text(title), "data": [f.count for _, f in rows], "links": [figure_url(f) for _, f in rows]}],
    }


def stacked_chart(groups: list[tuple[str, list[Figure]]], title: str) -> dict[str, Any]:
    """A stacked bar per group (a unit kind, a supervising authority), a segment per stage (``key``).

    A stage a group has no unit in is a zero-width segment with no link: there is nothing to list.
    """
    stages = [stage for stage in STAGES if any(f.key == stage for _, figures in groups for f in figures)]
    series = []
    for stage in stages:
        found = [next((f for f in figures if f.key == stage), None) for _, figures in groups]
        series.append({
            "key": stage, "label": stage_label(stage), "data": [f.count if f else 0 for f in found],
            "links": [figure_url(f) if f else None for f in found],
        })
    return {"title": _text(title), "horizontal": True, "stacked": True, "labels": [_text(label) for label, _ in groups], "series": series}


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
        kind_label=kind_label, rank_label=rank_label, chosen=as_of, future=future, bar_chart=bar_chart,
        stacked_chart=stacked_chart,
    ), status


__all__ = ["bar_chart", "bp", "figure_url", "stacked_chart"]
