"""The Flask app: factory, settings, extensions. Pages and the JSON API arrive in their own issues.

Nothing happens at import time; ``create_app`` builds everything (flaskr's pattern).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request
from flask_babel import Babel
from flask_wtf import CSRFProtect
from sqlalchemy import text

from .. import bootstrap
from ..config import Settings, load_settings
from ..engine import calendar_store
from ..engine.clock import Clock, SystemClock
from ..engine.db import Database
from ..engine.runtime import Runtime

LANGUAGES = ("vi", "en")


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
    )
    if test_config:
        app.config.update(test_config)
    database = db or bootstrap.open_database(settings)
    rt = runtime or bootstrap.build_runtime(settings, clock or SystemClock())
    app.extensions["qmsflow"] = {"settings": settings, "db": database, "runtime": rt}

    Babel(app, locale_selector=_locale)
    CSRFProtect(app)

    @app.get("/healthz")
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

    return app


def _locale() -> str:
    chosen = request.args.get("lang") or request.cookies.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES) or "vi"


__all__ = ["create_app"]
