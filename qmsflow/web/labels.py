"""Names of the engine's codes (roles, admin log actions) in the reader's language."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

ROLES = {
    "admin": _l("Quản trị hệ thống"),
    "lead": _l("Đơn vị đầu mối (Sở KH&CN)"),
    "supervisor": _l("Cơ quan quản lý cấp trên"),
    "unit_officer": _l("Cán bộ đầu mối ISO của đơn vị"),
    "viewer": _l("Lãnh đạo (chỉ xem)"),
    "system": _l("Hệ thống"),
}

ACTIONS = {
    "user.create": _l("Tạo tài khoản"),
    "user.update": _l("Sửa thông tin tài khoản"),
    "user.deactivate": _l("Khoá tài khoản"),
    "user.reset_password": _l("Cấp mật khẩu dùng một lần"),
    "user.set_password": _l("Đặt mật khẩu (dòng lệnh)"),
    "user.change_password": _l("Tự đổi mật khẩu"),
    "user.unlock": _l("Mở khoá đăng nhập"),
    "unit.create": _l("Tạo đơn vị"),
    "unit.set_parent": _l("Đổi cơ quan quản lý của đơn vị"),
    "contact.set": _l("Cập nhật người liên hệ của đơn vị"),
    "calendar.apply": _l("Áp dụng lịch làm việc mới"),
}


def role(code: str) -> str:
    """A role's name (the code itself when unknown)."""
    label = ROLES.get(code)
    return str(label) if label is not None else code


def action(code: str) -> str:
    """An admin log action's name (the code itself when unknown)."""
    label = ACTIONS.get(code)
    return str(label) if label is not None else code


__all__ = ["ACTIONS", "ROLES", "action", "role"]
