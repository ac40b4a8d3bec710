"""The officers' web app: the factory, and the list of features it registers.

Nothing happens at import time; ``create_app`` builds everything (flaskr's pattern). Each feature is
a blueprint in its own module; adding one is one line in ``_blueprints`` (and, for the header, one
in navigation.ENTRIES). How the app is laid out and why: docs/web.md.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify
from flask_wtf import CSRFProtect
from sqlalchemy import text

from .. import bootstrap
from ..config import Settings, load_settings
from ..engine import calendar_store
from ..engine.clock import Clock, SystemClock
from ..engine.db import Database
from ..engine.runtime import Runtime
from . import access, i18n, layout, security
from .context import WebServices, services
from .i18n import LANGUAGES

UPLOAD_OVERHEAD = 1024 * 1024  # the form fields around the largest evidence file


def _blueprints() -> list[Blueprint]:
    """The features, one blueprint each (imported here, so ``import qmsflow.web`` stays light)."""
    from . import (
        admin_log,
        auth,
        calendar_admin,
        cases,
        dashboard,
        errors,
        escalations,
        inbox,
        mywork,
        opening,
        tokens,
        unit_import,
        unit_page,
        units,
        units_admin,
        users,
    )

    return [
        errors.bp,
        auth.bp,
        mywork.bp,  # My work is the home page (it took home.index's place at "/")
        cases.bp,
        inbox.bp,
        opening.bp,
        users.bp,
        tokens.bp,
        admin_log.bp,
        unit_import.bp,
        dashboard.bp,
        units.bp,
        unit_page.bp,
        escalations.bp,
        units_admin.bp,
        calendar_admin.bp,
    ]


def _follow_the_stored_calendar(app: Flask, database: Database, rt: Runtime) -> None:
    """Keep this process on the stored calendar after an administrator changes it (engine/calendar_admin.py).

    The stored fingerprint is read at most every ten seconds (by the runtime's clock), one statement.
    """
    from ..engine.calendar_admin import CalendarFollower

    follower = CalendarFollower(rt)
    with database.read() as session:
        follower.sync(session)

    @app.before_request
    def follow_calendar() -> None:
        if follower.due(rt.clock.now()):
            with database.read() as session:
                follower.sync(session)


def create_app(
    test_config: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    db: Database | None = None,
    runtime: Runtime | None = None,
    clock: Clock | None = None,
) -> Flask:
    """Build the app from settings (or the given database and runtime, for tests)."""
    settings = settings or load_settings()
    app = Flask(__name__, instance_path=str(settings.instance_path.resolve()))
    app.config.update(
        SECRET_KEY=settings.require("secret_key").secret_key,
        BABEL_DEFAULT_LOCALE=settings.default_language,
        BABEL_DEFAULT_TIMEZONE="Asia/Ho_Chi_Minh",
        JSON_AS_ASCII=False,
        SESSION_COOKIE_NAME="qmsflow_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.web.secure_cookies,
        # The form's token lives as long as the session; the idle timeout ends both.
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=settings.evidence.max_bytes + UPLOAD_OVERHEAD,
    )
    if test_config:
        app.config.update(test_config)
    database = db or bootstrap.open_database(settings, "qmsflow-web")
    rt = runtime or bootstrap.build_runtime(settings, clock or SystemClock())
    app.extensions["qmsflow"] = WebServices(settings=settings, db=database, rt=rt)

    i18n.init_app(app)
    csrf = CSRFProtect(app)
    security.init_app(app, settings.web)
    access.init_app(app)
    layout.init_app(app)
    for blueprint in _blueprints():
        app.register_blueprint(blueprint)
    _follow_the_stored_calendar(app, database, rt)

    from . import api

    api.init_app(app, csrf)  # /api/v1: bearer tokens only, no session, no CSRF (docs/api.md)

    @app.get("/healthz")
    @access.public
    def healthz() -> Any:
        """Liveness and database reachability, for the operator's monitoring."""
        with database.read() as session:
            session.execute(text("SELECT 1"))
            stored = calendar_store.stored(session)
        refusal = stored.refusal(rt.calendar, planning=True)
        if refusal is not None:
            # this process would refuse to plan deadlines (CalendarMismatch): not healthy, and says why
            return jsonify(
                status="calendar_mismatch", detail=str(refusal), calendar=refusal.process, stored_calendar=refusal.stored,
                replanning=refusal.replanning,
            ), 503
        return jsonify(
            status="ok", calendar=stored.fingerprint, workflows=[f"{d.name}@{d.version}" for d in rt.registry.definitions()]
        )

    access.check_every_view_is_guarded(app)
    return app


__all__ = ["LANGUAGES", "WebServices", "create_app", "services"]
