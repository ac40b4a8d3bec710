"""The start page until My work (the web-cases feature) takes its place at ``/``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from .access import sign_in_required

bp = Blueprint("home", __name__)


@bp.get("/")
@sign_in_required
def index() -> Any:
    """Where a signed-in person lands: what they can open from here."""
    return render_template("home/index.html")


__all__ = ["bp"]
