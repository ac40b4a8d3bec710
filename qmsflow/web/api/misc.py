"""Evidence (upload as multipart, download), timers, escalations and my notifications."""

from __future__ import annotations

from typing import Any, BinaryIO, cast
from urllib.parse import quote

from flask import Response, request

from ...bootstrap import evidence_store
from ...engine import evidence as evidence_files
from ...engine.cursors import decode_cursor, encode_cursor, fingerprint
from ...engine.deadlines import MAX_DEADLINES, upcoming_deadlines
from ...engine.inbox import inbox_page, mark_all_read, mark_read
from ..context import services
from .cases import deadline_out
from .core import answer, bp, ctx, idempotent, next_link, operation
from .problems import Problem
from .schemas import (
    DeadlineList,
    Marked,
    MarkRead,
    NotificationList,
    NotificationOut,
    NotificationQuery,
    TimerQuery,
    UploadForm,
    UploadOut,
)


@bp.post("/evidence")
@operation(form=UploadForm, ok={201: UploadOut}, problems=(413, 415, 422), tag="evidence")
@idempotent
def upload() -> Any:
    """Stage one evidence file (multipart field ``file``: PDF, JPEG or PNG); attach it by id to an event or a new case."""
    if request.mimetype != "multipart/form-data":
        raise Problem("unsupported-media-type", "send the file as multipart/form-data, field 'file'")
    file = request.files.get("file")
    if file is None or not file.filename:
        raise Problem("field-invalid", "no file in the field 'file'", {"errors": [
            {"field": "file", "code": "required", "params": {}, "message": "required"}]})
    svc, c = services(), ctx()
    with svc.db.write() as session:
        staged = evidence_files.stage(session, evidence_store(svc.settings), c.actor, file.filename, cast(BinaryIO, file.stream),
                                      svc.rt.clock.now())
        out = UploadOut(id=staged.id, name=staged.name, content_type=staged.content_type, size=staged.size, sha256=staged.sha256,
                        expires_at=staged.expires_at)
    return answer(out, 201)


@bp.get("/evidence/<int:attachment_id>")
@operation(ok={200: None}, problems=(404, 409), tag="evidence")
def download(attachment_id: int) -> Any:
    """An attached evidence file, by attachment id, for whoever may see its case."""
    svc, c = services(), ctx()
    with svc.db.read() as session:
        upload, stream = evidence_files.open_attachment(session, evidence_store(svc.settings), c.actor, attachment_id,
                                                        svc.rt.clock.now())
        name, content_type = upload.name, upload.content_type
    with stream:
        content = stream.read()
    response = Response(content, mimetype=content_type)
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
    return response


def _offset_page(items: list[Any], marker: str, cursor: str | None, size: int) -> tuple[list[Any], str | None]:
    start = decode_cursor(cursor, marker) or 0
    page = items[start:start + size]
    return page, encode_cursor(start + size, marker) if start + size < len(items) else None


@bp.get("/timers")
@operation(query=TimerQuery, ok={200: DeadlineList}, problems=(), tag="deadlines")
def timers(query: TimerQuery) -> Any:
    """The pending deadlines of every case I see, next step first (optionally only those due before an instant)."""
    svc, c = services(), ctx()
    if query.due_before is not None and query.due_before.tzinfo is None:
        raise Problem("invalid-parameter", "due_before needs a UTC offset", {"errors": [
            {"field": "due_before", "code": "aware_instant", "params": {}, "message": "give an offset, e.g. Z or +07:00"}]})
    with svc.db.read() as session:
        found = upcoming_deadlines(session, svc.rt, c.actor, due_before=query.due_before, limit=MAX_DEADLINES, language=c.language)
    marker = fingerprint("timers", c.actor.username, query.due_before)
    page, cursor = _offset_page(found, marker, query.cursor, query.page_size)
    return answer(DeadlineList(items=[deadline_out(d) for d in page], next_cursor=cursor), headers=next_link(cursor))


@bp.get("/escalations")
@operation(query=TimerQuery, ok={200: DeadlineList}, problems=(), tag="deadlines")
def escalations(query: TimerQuery) -> Any:
    """The pending deadlines of cases I see that have escalated (level 1 and up), next step first."""
    svc, c = services(), ctx()
    with svc.db.read() as session:
        found = [d for d in upcoming_deadlines(session, svc.rt, c.actor, due_before=query.due_before, limit=MAX_DEADLINES,
                                               language=c.language) if d.level > 0]
    marker = fingerprint("escalations", c.actor.username, query.due_before)
    page, cursor = _offset_page(found, marker, query.cursor, query.page_size)
    return answer(DeadlineList(items=[deadline_out(d) for d in page], next_cursor=cursor), headers=next_link(cursor))


@bp.get("/notifications")
@operation(query=NotificationQuery, ok={200: NotificationList}, tag="notifications")
def notifications(query: NotificationQuery) -> Any:
    """My notifications, newest first, in my language, with the count of unread ones."""
    svc, c = services(), ctx()
    with svc.db.read() as session:
        page = inbox_page(session, svc.rt, c.actor, unread_only=query.unread, cursor=query.cursor, page_size=query.page_size)
    items = [NotificationOut(id=e.id, case_id=e.case_id, kind=e.kind, level=e.level, subject=e.subject, body=e.body,
                             created_at=e.created_at, read_at=e.read_at) for e in page.items]
    return answer(NotificationList(items=items, unread=page.unread, next_cursor=page.next_cursor), headers=next_link(page.next_cursor))


@bp.post("/notifications/read")
@operation(body=MarkRead, ok={200: Marked}, problems=(404, 415, 422), tag="notifications")
@idempotent
def read(body: MarkRead) -> Any:
    """Mark my notifications read: the ids given, or all."""
    svc, c = services(), ctx()
    if body.all == bool(body.ids):
        raise Problem("field-invalid", "give either ids or all: true", {"errors": [
            {"field": "ids", "code": "item_ids", "params": {"n": 500}, "message": "give ids, or all: true"}]})
    with svc.db.write() as session:
        marked = mark_all_read(session, svc.rt, c.actor) if body.all else mark_read(session, svc.rt, c.actor, body.ids)
    return answer(Marked(marked=marked))


__all__: list[str] = []
