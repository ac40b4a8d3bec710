"""The administrative log, for an administrator to read: newest first, what changed from what to what."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, render_template, request

from ..engine import adminlog
from .access import current_user, sign_in_required
from .context import services

bp = Blueprint("admin_log", __name__, url_prefix="/admin/log")
PAGE_SIZE = 50


@dataclass(frozen=True)
class Change:
    """One field of the object: its value before and after (None: absent)."""

    name: str
    before: object
    after: object


@dataclass(frozen=True)
class Row:
    """One admin log row as the page shows it."""

    seq: int
    at: datetime
    actor: str
    action: str
    object_kind: str
    object_id: str
    changes: list[Change]


def changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Change]:
    """The fields that differ between ``before`` and ``after`` (all of them for a creation or a removal)."""
    before, after = before or {}, after or {}
    return [
        Change(name, before.get(name), after.get(name))
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name) or not before or not after
    ]


@bp.get("/")
@sign_in_required
def index() -> Any:
    """A page of the log, newest first; ``?before=SEQ`` for older rows."""
    before = request.args.get("before", type=int)
    if before is not None and before < 1:
        abort(404)
    with services().db.read() as session:
        found = adminlog.entries(session, current_user().actor, before_seq=before, limit=PAGE_SIZE + 1)
        rows = [Row(e.seq, e.at, e.actor, e.action, e.object_kind, e.object_id, changes(e.before, e.after)) for e in found[:PAGE_SIZE]]
    older = rows[-1].seq if len(found) > PAGE_SIZE else None
    return render_template("admin_log/index.html", rows=rows, older=older, first_page=before is None)


__all__ = ["bp", "changes"]
