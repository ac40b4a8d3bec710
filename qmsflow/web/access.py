"""Who is signed in: ``g.user``, the sign-in decorator, and the session's life (idle timeout, epoch).

The session is Flask's signed cookie, holding the user's id, the user's ``session_epoch`` at
sign-in and the instant of the last request. Each request loads the user again (one statement):
a deactivated user, or one whose epoch has moved on (a password reset or change, a deactivation),
is signed out at their next request, on every device; so is a session idle for longer than
``[web] idle_timeout_minutes``.

Every view is either ``@sign_in_required`` or ``@public``; ``check_every_view_is_guarded`` refuses
to start an app with a view that is neither, so a forgotten decorator cannot open a page to anyone.
A user who must change their password reaches only the views marked ``allowed_before_password_change``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import Flask, flash, g, redirect, request, session, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..engine.definitions import Role
from ..engine.models import User
from ..engine.permissions import Actor
from .context import services

F = TypeVar("F", bound=Callable[..., Any])

# After signing in (and on the brand): My work, once the web-cases work registers it; see docs/web.md.
HOME_ENDPOINTS = ("mywork.index", "home.index")


@dataclass(frozen=True)
class CurrentUser:
    """The signed-in person, as loaded for this request (no ORM object outlives its session)."""

    id: int
    username: str
    full_name: str
    role: Role
    unit_id: int | None
    unit_name: str | None
    must_change_password: bool
    language: str = "vi"  # what the person reads pages, notifications and emails in (users.language)

    @property
    def actor(self) -> Actor:
        """The engine's actor for this person."""
        return Actor(username=self.username, role=self.role, unit_id=self.unit_id)

    @property
    def display_name(self) -> str:
        """The full name, or the username when there is none."""
        return self.full_name or self.username


def public(view: F) -> F:
    """Mark a view that anyone may open, signed in or not."""
    cast(Any, view).qmsflow_public = True
    return view


def allowed_before_password_change(view: F) -> F:
    """Mark a signed-in view that a user with a one-time password may still reach (change it, sign out)."""
    cast(Any, view).qmsflow_before_password_change = True
    return view


def sign_in_required(view: F) -> F:
    """Let only a signed-in user through; others are sent to the sign-in page and brought back after."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        user: CurrentUser | None = g.get("user")
        if user is None:
            return redirect(url_for("auth.sign_in", next=_here()))
        if user.must_change_password and not getattr(view, "qmsflow_before_password_change", False):
            flash(_("Bạn cần đổi mật khẩu dùng một lần trước khi tiếp tục."), "warning")
            return redirect(url_for("auth.change_password"))
        return view(*args, **kwargs)

    cast(Any, guarded).qmsflow_guarded = True
    return cast(F, guarded)


def _here() -> str:
    return request.full_path.rstrip("?") if request.method == "GET" else "/"


def safe_next(target: str | None) -> str | None:
    """Return ``target`` if it is a path on this site (never another host, never ``//host``), else None."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


def home_url() -> str:
    """Where a signed-in user starts: My work."""
    from flask import current_app

    endpoint = next(e for e in HOME_ENDPOINTS if e in current_app.view_functions)
    return url_for(endpoint)


def begin_session(user: User) -> None:
    """Start a fresh session for ``user`` (nothing of the anonymous session survives but the language)."""
    language = session.get("lang")
    session.clear()
    session["uid"] = user.id
    session["epoch"] = user.session_epoch
    session["seen"] = _now().timestamp()
    if language:
        session["lang"] = language


def keep_session_after_password_change(user: User) -> None:
    """Carry this session over the epoch a password change raised (the user's other sessions end)."""
    session["epoch"] = user.session_epoch


def end_session() -> None:
    """Sign out: forget everything but the language."""
    language = session.get("lang")
    session.clear()
    if language:
        session["lang"] = language


def _now() -> datetime:
    return services().rt.clock.now()


def load_user() -> Any:
    """Before each request: set ``g.user`` from the session, ending a session that is over."""
    g.user = None
    if request.blueprint == "api" or request.path.startswith("/api/"):
        return None  # the JSON API is bearer only: it neither reads nor refreshes a session cookie
    uid = session.get("uid")
    if uid is None or request.endpoint == "static":
        return None
    now = _now()
    idle = services().settings.web.idle_timeout_minutes * 60
    if now.timestamp() - float(session.get("seen", 0)) > idle:
        end_session()
        flash(_("Phiên làm việc đã kết thúc vì quá lâu không thao tác. Vui lòng đăng nhập lại."), "info")
        return None
    with services().db.read() as db_session:
        user = db_session.scalar(select(User).options(joinedload(User.unit)).where(User.id == uid))
        if user is None or not user.active or user.session_epoch != session.get("epoch"):
            end_session()
            flash(_("Phiên làm việc đã kết thúc. Vui lòng đăng nhập lại."), "info")
            return None
        g.user = CurrentUser(
            id=user.id, username=user.username, full_name=user.full_name, role=Role(user.role), unit_id=user.unit_id,
            unit_name=user.unit.name if user.unit else None, must_change_password=user.must_change_password,
            language=user.language,
        )
    session["seen"] = now.timestamp()
    return None


def current_user() -> CurrentUser:
    """The signed-in user of a ``@sign_in_required`` view."""
    user: CurrentUser | None = g.get("user")
    if user is None:  # pragma: no cover - the decorator keeps anonymous requests out
        raise RuntimeError("current_user() outside a @sign_in_required view")
    return user


def check_every_view_is_guarded(app: Flask) -> None:
    """Refuse to build an app with a view that is neither ``@sign_in_required`` nor ``@public``."""
    open_views = [
        endpoint for endpoint, view in app.view_functions.items()
        if endpoint != "static" and not getattr(view, "qmsflow_guarded", False) and not getattr(view, "qmsflow_public", False)
    ]
    if open_views:
        raise RuntimeError(f"views without @sign_in_required or @public: {sorted(open_views)}")


def init_app(app: Flask) -> None:
    """Load ``g.user`` before every request."""
    app.before_request(load_user)


__all__ = [
    "CurrentUser",
    "allowed_before_password_change",
    "begin_session",
    "check_every_view_is_guarded",
    "current_user",
    "end_session",
    "home_url",
    "init_app",
    "keep_session_after_password_change",
    "public",
    "safe_next",
    "sign_in_required",
]
