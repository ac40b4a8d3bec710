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


FIELDS = {
    "username": _l("tên đăng nhập"),
    "full_name": _l("họ và tên"),
    "email": _l("thư điện tử"),
    "role": _l("vai trò"),
    "unit_id": _l("đơn vị (số)"),
    "active": _l("đang hoạt động"),
    "password": _l("mật khẩu"),
    "locked_until": _l("khoá đến"),
    "code": _l("mã"),
    "name": _l("tên"),
    "kind": _l("loại"),
    "parent_id": _l("cơ quan quản lý (số)"),
    "valid_from": _l("hiệu lực từ"),
    "valid_to": _l("hiệu lực đến"),
    "is_lead": _l("đơn vị đầu mối"),
}

VALUES = {
    "set": _l("đã đặt"),
    "one-time": _l("dùng một lần"),
}


def field(name: str) -> str:
    """A logged field's name (the code itself when unknown)."""
    label = FIELDS.get(name)
    return str(label) if label is not None else name


def value(name: str, raw: object) -> str:
    """A logged value as a reader reads it: yes/no, a role's name, the words for a password's state."""
    if raw is True:
        return str(_l("có"))
    if raw is False:
        return str(_l("không"))
    if name == "role" and isinstance(raw, str):
        return role(raw)
    if isinstance(raw, str) and raw in VALUES:
        return str(VALUES[raw])
    return "" if raw is None else str(raw)


def role(code: str) -> str:
    """A role's name (the code itself when unknown)."""
    label = ROLES.get(code)
    return str(label) if label is not None else code


def action(code: str) -> str:
    """An admin log action's name (the code itself when unknown)."""
    label = ACTIONS.get(code)
    return str(label) if label is not None else code


__all__ = ["ACTIONS", "FIELDS", "ROLES", "action", "field", "role", "value"]
