"""Open escalations, by ladder level, for the lead unit (all) and supervisors (theirs).

Thin: the engine's ``escalations.open_escalations`` decides what is escalated, who sees it, its age
in working days and the body it is addressed to.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from ..engine.escalations import open_escalations
from . import casetext
from .access import current_user, sign_in_required
from .context import services
from .i18n import current_language

bp = Blueprint("escalations", __name__)


@bp.get("/escalations")
@sign_in_required
def index() -> Any:
    """Every open escalation the reader sees, highest level first, oldest first within a level."""
    with services().db.read() as session:
        levels = open_escalations(session, services().rt, current_user().actor, language=current_language())
    return render_template("escalations/index.html", levels=levels, total=sum(len(level.rows) for level in levels), text=casetext)


__all__ = ["bp"]
