"""The unit page: who the unit is and was, who supervises it, its contacts and its cases.

Thin: the engine's ``unitpage.unit_page`` decides what belongs to the unit and whether the reader
may see it (a unit outside the reader's scope is the same 404 as a missing one).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from flask_babel import gettext as _

from ..engine.unitpage import unit_page
from . import casetext
from .access import current_user, sign_in_required
from .context import services
from .i18n import current_language

bp = Blueprint("unit_page", __name__)


def kind_label(kind: str) -> str:
    """A unit kind (engine/units.UnitKind) in words."""
    words = {
        "province_pc": _("UBND tỉnh"),
        "province_office": _("Văn phòng UBND tỉnh"),
        "department": _("Sở, ban, ngành"),
        "branch": _("Chi cục"),
        "district_pc": _("UBND huyện"),
        "commune_pc": _("UBND xã, phường, đặc khu"),
        "high_school": _("Trường THPT"),
        "lower_secondary_school": _("Trường THCS"),
        "other": _("Đơn vị khác"),
    }
    return words.get(kind, kind)


def contact_role_label(role: str) -> str:
    """A contact's role in words."""
    return {"head": _("Thủ trưởng đơn vị"), "iso_officer": _("Cán bộ đầu mối ISO")}.get(role, role)


@bp.get("/units/<int:unit_id>")
@sign_in_required
def show(unit_id: int) -> Any:
    """The unit page (404 outside the reader's scope)."""
    with services().db.read() as session:
        page = unit_page(session, services().rt, current_user().actor, unit_id, language=current_language())
    return render_template("unit_page/show.html", page=page, text=casetext, kind_label=kind_label, contact_role_label=contact_role_label)


__all__ = ["bp", "contact_role_label", "kind_label"]
