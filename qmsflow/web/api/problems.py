"""RFC 9457 problem details: every refusal of the JSON API in one shape, each kind with its own ``type``.

The ``type`` URIs are URNs (``urn:qmsflow:problem:stale-version``): stable names an integrator can
switch on, that point at no host. docs/api.md lists them. Engine errors become problems here and
only here (``from_error``), as web/errors.py does for the pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flask import Response

from ...engine.errors import (
    CalendarMismatch,
    Conflict,
    DatabaseBusy,
    DatabaseUnavailable,
    FieldProblem,
    GuardFailed,
    IdempotencyInFlight,
    InvalidToken,
    InvalidTransition,
    NotFound,
    NotPermitted,
    QmsflowError,
    RateLimited,
    StaleVersion,
    ValidationFailed,
)

PROBLEM_JSON = "application/problem+json"
BASE = "urn:qmsflow:problem:"

# name -> (status, title)
TYPES: dict[str, tuple[int, str]] = {
    "malformed-json": (400, "The body is not valid JSON"),
    "invalid-parameter": (400, "A query parameter or header is not valid"),
    "precondition-mismatch": (400, "If-Match and expected_version disagree"),
    "unauthorized": (401, "A valid bearer token is needed"),
    "forbidden": (403, "Your role may not do this"),
    "not-found": (404, "Not found, or not visible to you"),
    "method-not-allowed": (405, "This method is not allowed here"),
    "stale-version": (409, "The case has moved on since the version you sent"),
    "conflict": (409, "This conflicts with stored data"),
    "idempotency-in-flight": (409, "A request with this Idempotency-Key is still running"),
    "precondition-failed": (412, "The case's version is not the one in If-Match"),
    "payload-too-large": (413, "The upload is larger than allowed"),
    "unsupported-media-type": (415, "This content type is not accepted here"),
    "field-invalid": (422, "A field is not valid"),
    "invalid-transition": (422, "This event cannot fire from the case's state"),
    "guard-failed": (422, "The event's data or conditions do not hold"),
    "idempotency-key-reused": (422, "This Idempotency-Key was used with another request"),
    "rate-limited": (429, "Too many requests for this token"),
    "internal": (500, "Unexpected error; nothing was changed"),
    "unavailable": (503, "The database is busy or unavailable; nothing was changed, try again"),
}


@dataclass
class Problem(Exception):
    """A refusal to send as problem details; raise it from a view, or return ``response()``."""

    kind: str
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        """The HTTP status of this kind."""
        return TYPES[self.kind][0]

    def body(self, instance: str = "") -> dict[str, Any]:
        """The problem document."""
        status, title = TYPES[self.kind]
        out: dict[str, Any] = {"type": BASE + self.kind, "title": title, "status": status}
        if self.detail:
            out["detail"] = self.detail
        if instance:
            out["instance"] = instance
        out.update(self.extra)
        return out

    def response(self, instance: str = "") -> Response:
        """The problem as a response, ``application/problem+json``."""
        response = Response(json.dumps(self.body(instance), ensure_ascii=False), status=self.status, mimetype=PROBLEM_JSON)
        response.headers.update(self.headers)
        return response


def field_errors(problems: list[FieldProblem], language: str) -> list[dict[str, Any]]:
    """Each field's problem, machine-readable (``field``, ``code``, ``params``) with a sentence in ``language``."""
    return [
        {"field": p.field, "code": p.code, "params": _plain(p.params), "message": p.render(language)} for p in problems
    ]


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(params, default=str, ensure_ascii=False))


def from_error(error: QmsflowError, language: str, *, if_match: bool = False, reading: bool = False) -> Problem:
    """The problem an engine error is (``if_match``: a stale version came from If-Match; ``reading``: a GET)."""
    if isinstance(error, InvalidToken):
        return Problem("unauthorized", "the bearer token is missing, unknown, revoked or expired, or its user is deactivated",
                       headers={"WWW-Authenticate": 'Bearer realm="qmsflow", error="invalid_token"'})
    if isinstance(error, NotFound):
        return Problem("not-found", f"{error.kind} {error.key} not found")
    if isinstance(error, NotPermitted):
        return Problem("forbidden", f"{error.user} may not {error.action}")
    if isinstance(error, StaleVersion):
        if if_match:
            return Problem("precondition-failed", f"the case is at version {error.actual}", {"current_version": error.actual},
                           headers={"ETag": f'"{error.actual}"'})
        return Problem("stale-version", f"the case is at version {error.actual}, not {error.expected}: reload it",
                       {"current_version": error.actual, "expected_version": error.expected}, headers={"ETag": f'"{error.actual}"'})
    if isinstance(error, InvalidTransition):
        return Problem("invalid-transition", f"event {error.event!r} cannot fire from state {error.state!r}",
                       {"state": error.state, "event": error.event})
    if isinstance(error, GuardFailed):
        kind = "guard-failed" if any(p.code in {"guard", "undecided", "no_branch"} for p in error.problems) else "field-invalid"
        return Problem(kind, "; ".join(p.render(language) for p in error.problems), {"errors": field_errors(error.problems, language)})
    if isinstance(error, ValidationFailed):
        if any(p.code == "idempotency_reused" for p in error.problems):
            return Problem("idempotency-key-reused", error.problems[0].render(language))
        kind = "invalid-parameter" if reading or any(p.field == "Idempotency-Key" for p in error.problems) else "field-invalid"
        return Problem(kind, "; ".join(f"{p.field}: {p.render(language)}" for p in error.problems),
                       {"errors": field_errors(error.problems, language)})
    if isinstance(error, IdempotencyInFlight):
        return Problem("idempotency-in-flight", str(error), headers={"Retry-After": "1"})
    if isinstance(error, RateLimited):
        return Problem("rate-limited", str(error), {"limit": error.limit}, headers={"Retry-After": str(error.retry_after)})
    if isinstance(error, Conflict):
        return Problem("conflict", error.message, {"details": _plain(error.details)})
    if isinstance(error, DatabaseBusy | DatabaseUnavailable | CalendarMismatch):
        return Problem("unavailable", "nothing was changed; try again in a moment", headers={"Retry-After": "1"})
    return Problem("internal")


__all__ = ["BASE", "PROBLEM_JSON", "TYPES", "Problem", "field_errors", "from_error"]
