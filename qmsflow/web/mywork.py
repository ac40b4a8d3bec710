"""My work, the home page: what the signed-in person should look at now (the engine's ``mywork``).

A row links to its case; only an event with no fields gets a button here, which leads to a
confirmation page first (qmsflow/web/cases.py). Supervisors, the lead and viewers watch.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request

from ..engine.errors import FieldProblem, ValidationFailed
from ..engine.mywork import View, my_work
from ..engine.permissions import may_open
from . import casetext
from .access import current_user, sign_in_required
from .context import services
from .i18n import current_language

bp = Blueprint("mywork", __name__)
PAGE_SIZE = 50


def _page() -> int:
    raw = request.args.get("page", "1")
    if not raw.isdigit():
        raise ValidationFailed([FieldProblem("page", "page_out_of_range")])
    return int(raw)


@bp.get("/")
@sign_in_required
def index() -> Any:
    """My work."""
    with services().db.read() as session:
        work = my_work(session, services().rt, current_user().actor, page=_page(), page_size=PAGE_SIZE, language=current_language())
    return render_template(
        "mywork/index.html", work=work, View=View, text=casetext, may_open=may_open(current_user().actor),
    )


__all__ = ["bp"]
