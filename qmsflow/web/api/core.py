"""The JSON API's plumbing: bearer tokens, the rate limit, Idempotency-Key, parsing, headers, problems.

Every route of the blueprint is an ``@operation``: its request and response models document it in
the generated OpenAPI document (spectree, on the pydantic models of schemas.py), and the same
models parse the request here, so what is documented is what is checked. Views stay thin: parse,
call an engine service in a transaction, return a model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlencode

from flask import Blueprint, Response, g, request
from pydantic import BaseModel
from pydantic import ValidationError as PydanticError
from spectree import Response as Documented
from spectree import SecurityScheme, SpecTree
from spectree.models import SecureType, SecuritySchemeData
from werkzeug.exceptions import HTTPException

from ...engine import idempotency, tokens
from ...engine.errors import QmsflowError
from ..context import services
from .problems import Problem, from_error
from .schemas import ProblemModel

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
PREFIX = "/api/v1"

bp = Blueprint("api", __name__, url_prefix=PREFIX)

spec = SpecTree(
    "flask",
    mode="strict",
    annotations=False,
    title="qmsflow API",
    version="1",
    description="The JSON API of qmsflow (docs/api.md): bearer tokens, RFC 9457 problems, cursor pages, Idempotency-Key.",
    validation_error_status=422,
    validation_error_model=ProblemModel,
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
    security_schemes=[SecurityScheme(name="bearer", data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer"))],
    security={"bearer": []},
    path="api/v1/_spectree",  # spectree's own routes are never registered; the document is served by docs.py
)

PUBLIC = {"api.openapi", "api.docs"}
# Every operation may answer these (documented on each): no or a bad token, the rate limit, a busy database.
COMMON = {401: "unauthorized", 429: "rate-limited", 503: "unavailable"}


class Ctx:
    """What an authenticated request carries (``g.api``)."""

    def __init__(self, auth: tokens.Authenticated) -> None:
        self.auth = auth

    @property
    def actor(self) -> Any:
        """The engine actor the token acts as."""
        return self.auth.actor

    @property
    def language(self) -> str:
        """The token's user's language, for sentences in problems and labels."""
        return self.auth.language


def ctx() -> Ctx:
    """The current request's authenticated context."""
    found: Ctx = g.api
    return found


def operation(
    *,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    form: type[BaseModel] | None = None,
    ok: dict[int, type[BaseModel] | None],
    problems: tuple[int, ...] = (),
    tag: str,
) -> Callable[[F], F]:
    """Document a route (models, answers) and run it with parsing, problems and, for a POST, Idempotency-Key."""
    codes: dict[str, Any] = {f"HTTP_{status}": model for status, model in ok.items()}
    for status in {*problems, *COMMON, 400}:
        codes[f"HTTP_{status}"] = ProblemModel

    def decorate(view: F) -> F:
        documented = spec.validate(query=query, json=body, form=form, resp=Documented(**codes), tags=[tag], skip_validation=True)(view)

        @wraps(view)
        def run(*args: Any, **kwargs: Any) -> Any:
            if query is not None:
                kwargs["query"] = parse_query(query)
            if body is not None:
                kwargs["body"] = parse_body(body)
            return view(*args, **kwargs)

        cast(Any, run).__wrapped__ = documented
        cast(Any, run).qmsflow_guarded = True  # the blueprint's before_request demands a bearer token
        return cast(F, run)

    return decorate


def _pydantic_errors(error: PydanticError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "code": e["type"], "params": {}, "message": e["msg"]}
        for e in error.errors(include_url=False, include_context=False, include_input=False)
    ]


def parse_query(model: type[BaseModel]) -> Any:
    """The query string as ``model``; 400 invalid-parameter with a reason per parameter otherwise."""
    raw: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        if len(values) > 1:
            raise Problem("invalid-parameter", f"{key} is given more than once",
                          {"errors": [{"field": key, "code": "given_twice", "params": {}, "message": "given more than once"}]})
        raw[key] = values[0]
    try:
        return model.model_validate(raw)
    except PydanticError as exc:
        raise Problem("invalid-parameter", "a query parameter is not valid", {"errors": _pydantic_errors(exc)}) from None


def parse_body(model: type[BaseModel]) -> Any:
    """The JSON body as ``model``: 415 for another content type, 400 for malformed JSON, 422 per field."""
    if request.mimetype != "application/json":
        raise Problem("unsupported-media-type", "send the body as application/json")
    try:
        raw = json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem("malformed-json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise Problem("field-invalid", "the body must be a JSON object",
                      {"errors": [{"field": "body", "code": "json_not_object", "params": {}, "message": "must be a JSON object"}]})
    try:
        return model.model_validate(raw)
    except PydanticError as exc:
        raise Problem("field-invalid", "a field is not valid", {"errors": _pydantic_errors(exc)}) from None


def answer(model: BaseModel | None, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer of ``model`` (RFC 3339 instants in UTC, local dates)."""
    text = model.model_dump_json() if model is not None else ""
    response = Response(text, status=status, mimetype="application/json" if model is not None else None)
    response.headers.update(headers or {})
    return response


def next_link(cursor: str | None) -> dict[str, str]:
    """The ``Link: <...>; rel="next"`` header of a page whose next page starts at ``cursor``."""
    if cursor is None:
        return {}
    args = {k: v for k, v in request.args.items() if k != "cursor"}
    args["cursor"] = cursor
    return {"Link": f'<{request.path}?{urlencode(args)}>; rel="next"'}


# ----------------------------------------------------------------------------------- the blueprint


@bp.before_request
def authenticate() -> Any:
    """Bearer only: no session cookie is read here, so CSRF does not apply; then the rate limit."""
    if request.endpoint in PUBLIC:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return Problem("unauthorized", "send Authorization: Bearer <token>",
                       headers={"WWW-Authenticate": 'Bearer realm="qmsflow"'}).response(request.path)
    svc = services()
    now = svc.rt.clock.now()
    # A read first: most requests need no write for the token (last use is written once a minute), and
    # on SQLite a write transaction per request would queue every request behind every other.
    with svc.db.read() as session:
        auth = tokens.authenticate(session, secret.strip(), now, touch=False)
    limit = svc.settings.api.rate_limit_per_minute
    if auth.stale_use or limit > 0:
        with svc.db.write() as session:
            if auth.stale_use:
                tokens.mark_used(session, auth.token_id, now)
            tokens.count_request(session, auth.token_id, now, limit)
    g.api = Ctx(auth)
    return None


@bp.after_request
def headers(response: Response) -> Response:
    """Answers are never cached (a GET's body may change without a new version), and set no cookie."""
    response.headers["Cache-Control"] = "no-store"
    response.headers.pop("Set-Cookie", None)
    response.headers.pop("Vary", None)
    return response


def _language() -> str:
    found: Ctx | None = g.get("api")
    return found.language if found is not None else "en"


@bp.errorhandler(Problem)
def problem(error: Problem) -> Response:
    """A refusal the API itself raised."""
    return error.response(request.path)


@bp.errorhandler(QmsflowError)
def engine_error(error: QmsflowError) -> Response:
    """An engine error, as its problem."""
    found = from_error(error, _language(), if_match=bool(g.get("if_match")), reading=request.method == "GET")
    if found.kind in {"internal", "unavailable"}:
        log.warning("API request failed: %s", error)
    return found.response(request.path)


def http_problem(error: HTTPException) -> Response:
    """An HTTP error (no route, wrong method, too large) as a problem; used for /api/ paths app-wide."""
    kinds = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large", 415: "unsupported-media-type", 400: "invalid-parameter"}
    kind = kinds.get(error.code or 500, "internal" if (error.code or 500) >= 500 else "invalid-parameter")
    response = Problem(kind, error.description or "").response(request.path)
    if error.code == 405 and error.response is None:
        allowed = getattr(error, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
    return response


bp.register_error_handler(HTTPException, http_problem)


@bp.errorhandler(Exception)
def unexpected(error: Exception) -> Response:
    """Anything else: logged with its traceback, answered 500 in the problem format, never a traceback."""
    log.exception("unexpected API error", exc_info=error)
    return Problem("internal").response(request.path)


# --------------------------------------------------------------------------------- Idempotency-Key


def idempotent(view: F) -> F:
    """A POST that honours ``Idempotency-Key``: the first answer (2xx or 4xx) is replayed to every retry."""

    @wraps(view)
    def run(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return view(*args, **kwargs)
        svc = services()
        auth = ctx().auth
        fingerprint = idempotency.request_hash(request.method, request.path, request.mimetype, request.get_data(cache=True))
        keep = _hours(svc.settings.api.idempotency_hours)
        with svc.db.write() as session:
            replay = idempotency.begin(session, auth.token_id, key, fingerprint, svc.rt.clock.now(), keep)
        if replay is not None:
            response = Response(replay.body, status=replay.status, headers=replay.headers)
            response.headers["Idempotency-Replayed"] = "true"
            return response
        try:
            response = _to_response(view, *args, **kwargs)
        except BaseException:
            with svc.db.write() as session:
                idempotency.abandon(session, auth.token_id, key)
            raise
        kept = {k: v for k, v in response.headers.items() if k in {"Content-Type", "ETag", "Location", "Link"}}
        with svc.db.write() as session:
            idempotency.finish(session, auth.token_id, key, response.status_code, kept, response.get_data(as_text=True))
        return response

    return cast(F, run)


def _to_response(view: Callable[..., Any], *args: Any, **kwargs: Any) -> Response:
    """Run the view, turning a refusal into its problem response here, so a 4xx is stored for replay."""
    try:
        return cast(Response, view(*args, **kwargs))
    except Problem as error:
        return error.response(request.path)
    except QmsflowError as error:
        found = from_error(error, _language(), if_match=bool(g.get("if_match")), reading=False)
        if found.status >= 500:
            raise
        return found.response(request.path)


def _hours(n: int) -> Any:
    from datetime import timedelta

    return timedelta(hours=n)


__all__ = ["PREFIX", "Ctx", "answer", "bp", "ctx", "idempotent", "next_link", "operation", "spec"]
