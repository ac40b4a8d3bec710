"""What the base layout needs on every page: the signed-in person, the navigation, the unread count."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app, g

from ..engine.errors import QmsflowError
from . import navigation
from .context import services

log = logging.getLogger(__name__)


def inbox_unread() -> int | None:
    """The signed-in user's unread inbox items (the engine's inbox service), or None when there is no inbox page."""
    user = g.get("user")
    if user is None or user.must_change_password or "inbox.index" not in current_app.view_functions:
        return None
    from ..engine.inbox import inbox_page

    try:
        with services().db.read() as session:
            return inbox_page(session, services().rt, user.actor, unread_only=True, page_size=1).unread
    except QmsflowError as exc:  # the header must not turn a page into an error page
        log.warning("unread count unavailable: %s", exc)
        return None


def start_url() -> str:
    """Where the brand in the header leads: My work when signed in, else the sign-in page."""
    from flask import url_for

    from .access import home_url

    return home_url() if g.get("user") else url_for("auth.sign_in")


def _layout() -> dict[str, Any]:
    user = g.get("user")
    return {"nav_links": lambda: navigation.links(user), "inbox_unread": inbox_unread, "start_url": start_url}


def init_app(app: Flask) -> None:
    """Give every template the layout's values."""
    from . import labels

    app.context_processor(_layout)
    app.jinja_env.globals.update(role_label=labels.role, action_label=labels.action, field_label=labels.field,
                                 value_label=labels.value)


__all__ = ["inbox_unread", "init_app"]
