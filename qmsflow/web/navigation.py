"""The header's navigation: one entry per feature, shown when its blueprint is registered and the
engine says the signed-in user may use it. A new feature adds one line to ``ENTRIES``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app, request, url_for
from flask_babel import lazy_gettext as _l

from ..engine.escalations import may_read_escalations
from ..engine.permissions import AdminArea, may_administer
from .access import CurrentUser


@dataclass(frozen=True)
class Entry:
    """A link in the header: the endpoint, its label, and who sees it."""

    endpoint: str
    label: object  # a lazy string, translated when rendered
    shown: Callable[[CurrentUser], bool]


def _everyone(user: CurrentUser) -> bool:
    return True


def _user_admin(user: CurrentUser) -> bool:
    return may_administer(user.actor, AdminArea.USERS)


def _escalation_reader(user: CurrentUser) -> bool:
    return may_read_escalations(user.actor)


ENTRIES: list[Entry] = [
    Entry("mywork.index", _l("Việc của tôi"), _everyone),
    Entry("home.index", _l("Trang chính"), _everyone),
    Entry("dashboard.index", _l("Tổng quan"), _everyone),  # scoped by the engine: province, subtree or own unit
    Entry("units.index", _l("Đơn vị"), _everyone),
    Entry("inbox.index", _l("Hộp thư"), _everyone),
    Entry("escalations.index", _l("Chuyển cấp"), _escalation_reader),
    Entry("users.index", _l("Người dùng"), _user_admin),
    Entry("tokens.index", _l("Mã truy cập API"), _everyone),
    Entry("admin_log.index", _l("Nhật ký quản trị"), _user_admin),
]


@dataclass(frozen=True)
class Link:
    """A rendered navigation link."""

    url: str
    label: str
    current: bool


def links(user: CurrentUser | None) -> list[Link]:
    """The navigation links ``user`` sees, the current page's marked."""
    if user is None or user.must_change_password:
        return []
    shown = []
    blueprint = request.blueprint
    for entry in ENTRIES:
        if entry.endpoint not in current_app.view_functions or not entry.shown(user):
            continue
        if entry.endpoint == "home.index" and "mywork.index" in current_app.view_functions:
            continue
        shown.append(Link(url_for(entry.endpoint), str(entry.label), blueprint == entry.endpoint.partition(".")[0]))
    return shown


__all__ = ["ENTRIES", "Entry", "Link", "links"]
