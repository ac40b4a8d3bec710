"""Headers every response carries, and the client address behind trusted proxies.

The Content-Security-Policy allows scripts and styles from this site only: no inline script, no
inline style attribute, nothing from elsewhere; ``frame-ancestors 'none'`` keeps the pages out of
other sites' frames. Bootstrap's form controls draw their arrows as ``data:`` SVG images, hence
``img-src 'self' data:``. htmx is told not to inject its indicator style (base.html's meta tag).
"""

from __future__ import annotations

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

from ..config import WebSettings

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def _add_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        # Pages show what a person may see: no shared cache keeps them, and Back after sign-out shows nothing.
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def init_app(app: Flask, web: WebSettings) -> None:
    """Send the headers on every response; believe ``web.trusted_proxies`` proxies about the client address."""
    app.after_request(_add_headers)
    if web.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=web.trusted_proxies, x_proto=web.trusted_proxies)  # type: ignore[method-assign]


def client_address() -> str:
    """The client's address, as the trusted proxies (or the connection) tell it."""
    return request.remote_addr or "unknown"


__all__ = ["CSP", "HEADERS", "client_address", "init_app"]
