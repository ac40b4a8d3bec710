"""Error pages (400, 403, 404, 405, 413, 500, 503) in the layout and the reader's language, and the
one place engine errors become HTTP statuses.

A case, a user or a file the reader may not see is a 404, the same page as one that does not
exist (qmsflow/engine/permissions.py). No traceback reaches the reader: an unexpected error is
logged with its traceback and shown as a 500 page.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ..engine.errors import (
    DatabaseBusy,
    DatabaseUnavailable,
    NotFound,
    NotPermitted,
    QmsflowError,
    StaleVersion,
    ValidationFailed,
)

bp = Blueprint("errors", __name__)
log = logging.getLogger(__name__)


def _titles() -> dict[int, tuple[str, str]]:
    return {
        400: (_("Yêu cầu không hợp lệ"), _("Trang không hiểu được yêu cầu này. Hãy quay lại và thử lại.")),
        403: (_("Không có quyền"), _("Tài khoản của bạn không được làm việc này. Nếu cần, hãy liên hệ quản trị hệ thống.")),
        404: (_("Không tìm thấy trang"), _("Trang này không có, hoặc bạn không được xem. Hãy kiểm tra lại địa chỉ.")),
        405: (_("Không làm được theo cách này"), _("Trang này không nhận yêu cầu theo cách vừa gửi. Hãy quay lại và dùng nút trên trang.")),
        409: (_("Hồ sơ đã thay đổi"), _("Dữ liệu đã được người khác cập nhật. Hãy tải lại trang và làm lại.")),
        413: (_("Tệp quá lớn"), _("Tệp vừa gửi vượt quá dung lượng cho phép. Hãy gửi tệp nhỏ hơn.")),
        500: (_("Đã có lỗi"), _("Hệ thống gặp lỗi ngoài dự kiến; không có thay đổi nào được lưu. Hãy thử lại sau ít phút.")),
        503: (_("Hệ thống đang bận"), _("Không có thay đổi nào được lưu. Hãy thử lại sau ít phút.")),
    }


def render_error(status: int, message: str | None = None) -> tuple[str, int]:
    """Render the error page for ``status`` (an optional message replaces the usual explanation)."""
    title, text = _titles().get(status, _titles()[500])
    return render_template("errors/error.html", status=status, title=title, message=message or text), status


@bp.app_errorhandler(CSRFError)
def csrf_refused(error: CSRFError) -> tuple[str, int]:
    """A form without its token, or with an expired one: refused, nothing changed."""
    return render_error(400, _("Biểu mẫu đã hết hạn hoặc không hợp lệ, nên không có gì được lưu. Hãy tải lại trang và gửi lại."))


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException) -> Any:
    """Every HTTP error as a page in the layout (under /api/, as a problem document)."""
    if error.code is None or error.code < 400:
        return error
    if request.path.startswith("/api/"):
        from .api import http_problem

        return http_problem(error)
    return render_error(error.code if error.code in _titles() else 400 if error.code < 500 else 500)


@bp.app_errorhandler(NotFound)
def not_found(error: NotFound) -> tuple[str, int]:
    """Not there, or not visible: the same page."""
    return render_error(404)


@bp.app_errorhandler(NotPermitted)
def not_permitted(error: NotPermitted) -> tuple[str, int]:
    """Visible, but not this action."""
    return render_error(403)


@bp.app_errorhandler(StaleVersion)
def stale(error: StaleVersion) -> tuple[str, int]:
    """Acted on an older version than the stored one (a view that knows better says what changed)."""
    return render_error(409)


@bp.app_errorhandler(ValidationFailed)
def invalid(error: ValidationFailed) -> tuple[str, int]:
    """Malformed input that no form showed next to its field."""
    return render_error(400)


@bp.app_errorhandler(DatabaseBusy)
@bp.app_errorhandler(DatabaseUnavailable)
def database_trouble(error: QmsflowError) -> tuple[str, int]:
    """The database could not take the work: nothing was changed."""
    log.warning("database trouble: %s", error)
    return render_error(503)


@bp.app_errorhandler(Exception)
def unexpected(error: Exception) -> tuple[str, int]:
    """Anything else: logged with its traceback, shown as a 500 page."""
    log.exception("unexpected error", exc_info=error)
    if request.path.startswith("/api/"):
        from .api.problems import Problem

        return Problem("internal").response(request.path)  # type: ignore[return-value]
    return render_error(500)


__all__ = ["bp", "render_error"]
