"""The generated OpenAPI 3.1 document and the interactive documentation page (vendored Swagger UI).

The document comes from the routes and their pydantic models (spectree); ``document`` adds what
the models cannot say: problems are ``application/problem+json``, POSTs take ``Idempotency-Key``,
events take ``If-Match``, and answers carry ``ETag``, ``Link`` and ``Cache-Control``.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from flask import Response, current_app, render_template

from ..access import public
from .core import bp, spec
from .problems import PROBLEM_JSON

IDEMPOTENCY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Makes a retry safe: the first answer (2xx or 4xx) is replayed for 24 hours or more (docs/api.md).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}
IF_MATCH = {
    "name": "If-Match", "in": "header", "required": False,
    "description": 'The case version you acted on, as its ETag ("7"); 412 if the case has moved on.',
    "schema": {"type": "string", "pattern": '^"[0-9]{1,9}"$'},
}


def _finish(raw: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(raw)
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            for status, answer in op["responses"].items():
                content = answer.get("content", {})
                if status.startswith(("4", "5")) and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
                if status == "200" and path.endswith("/evidence/{attachment_id}"):
                    answer["content"] = {t: {"schema": {"type": "string", "format": "binary"}}
                                         for t in ("application/pdf", "image/jpeg", "image/png")}
            if method == "post":
                op.setdefault("parameters", []).append(IDEMPOTENCY)
            if path.endswith("/events"):
                op["parameters"].append(IF_MATCH)
            body = op.get("requestBody", {}).get("content", {})
            if "multipart/form-data" in body:
                body["multipart/form-data"]["schema"] = {
                    "type": "object", "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
    doc["info"]["license"] = {"name": "AGPL-3.0-or-later", "identifier": "AGPL-3.0-or-later"}
    return doc


@cache
def _document_text(app_id: int) -> str:
    return json.dumps(_finish(spec.spec), ensure_ascii=False, sort_keys=True)


def document() -> dict[str, Any]:
    """The OpenAPI document of this app (built once per process)."""
    spec.app = current_app
    loaded: dict[str, Any] = json.loads(_document_text(id(current_app._get_current_object())))  # type: ignore[attr-defined]
    return loaded


@bp.get("/openapi.json")
@public
def openapi() -> Response:
    """The OpenAPI 3.1 document, generated from the code."""
    spec.app = current_app
    return Response(_document_text(id(current_app._get_current_object())), mimetype="application/json")  # type: ignore[attr-defined]


@bp.get("/docs")
@public
def docs() -> Any:
    """The interactive documentation page (Swagger UI, vendored, no CDN)."""
    return render_template("api/docs.html")


__all__ = ["document"]
