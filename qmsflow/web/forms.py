"""Engine problems next to their fields, in the reader's language.

The engine names each problem with a code (``FieldProblem.code``); ``MESSAGES`` says it in words.
A problem without a known code shows the engine's own message, so nothing is ever hidden.
"""

from __future__ import annotations

from flask import request
from flask_babel import lazy_gettext as _l

from ..engine.errors import FieldProblem

MESSAGES = {
    "username_format": _l("Tên đăng nhập gồm 2 đến 64 ký tự: chữ thường không dấu, chữ số, dấu chấm, gạch dưới hoặc gạch ngang."),
    "username_taken": _l("Tên đăng nhập này đã có người dùng. Hãy chọn tên khác."),
    "role_unknown": _l("Hãy chọn một vai trò trong danh sách."),
    "unit_required": _l("Vai trò này cần một đơn vị: hãy nhập mã đơn vị."),
    "unit_unknown": _l("Không có đơn vị nào mang mã này vào hôm nay."),
    "email_format": _l("Địa chỉ thư điện tử phải có dạng ten@donvi.gov.vn."),
    "too_long": _l("Nội dung quá dài."),
    "password_too_short": _l("Mật khẩu cần ít nhất 10 ký tự."),
    "password_too_long": _l("Mật khẩu dài quá 256 ký tự."),
    "password_wrong": _l("Mật khẩu hiện tại không đúng."),
    "password_unchanged": _l("Mật khẩu mới phải khác mật khẩu hiện tại."),
    "password_mismatch": _l("Hai lần nhập mật khẩu mới không giống nhau."),
    "deactivate_self": _l("Bạn không thể tự khoá tài khoản của chính mình."),
    "user_inactive": _l("Tài khoản này đã bị khoá."),
    "page_out_of_range": _l("Trang không hợp lệ."),
}


def field_errors(problems: list[FieldProblem]) -> dict[str, str]:
    """Map each field to the message of its first problem, translated."""
    errors: dict[str, str] = {}
    for problem in problems:
        message = MESSAGES.get(problem.code)
        errors.setdefault(problem.field, str(message) if message is not None else problem.message)
    return errors


def text(name: str, limit: int = 255) -> str:
    """A submitted text field, trimmed and cut to ``limit`` characters (missing: empty)."""
    return request.form.get(name, "").strip()[:limit]


__all__ = ["MESSAGES", "field_errors", "text"]
