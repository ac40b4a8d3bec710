"""The JSON API, ``/api/v1``: bearer tokens, generated OpenAPI 3.1, Idempotency-Key, exact conflicts.

Bearer only: no session cookie is read or set under ``/api``, so CSRF does not apply (the
blueprint is exempt), and no CORS headers are sent. Each module holds one group of resources;
they call the same engine services as the pages (thin views). See docs/api.md.
"""

from __future__ import annotations

from flask import Flask
from flask_wtf import CSRFProtect

from .core import PREFIX, bp, http_problem


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    """Register the API's blueprint, exempt from CSRF."""
    from . import cases, docs, misc, summary, units  # noqa: F401  (their routes register on bp)

    csrf.exempt(bp)
    app.register_blueprint(bp)


__all__ = ["PREFIX", "bp", "http_problem", "init_app"]
