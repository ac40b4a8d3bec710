"""Opaque page cursors: where the last page ended, tied to the filters that made it.

A cursor is base64url JSON ``{"v": 1, "after": <id>, "f": <filter fingerprint>}``. It is not signed:
it only says where to resume, every page is filtered by scope again, and a cursor made under other
filters (or edited into nonsense) is refused with ValidationFailed rather than silently misread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from .errors import FieldProblem, ValidationFailed

_VERSION = 1
MAX_PAGE_SIZE = 200


def fingerprint(*parts: object) -> str:
    """Return a short stable digest of the filters a list was made under."""
    text = json.dumps([str(p) for p in parts], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_cursor(after: int, filters: str) -> str:
    """Return the cursor resuming after row id ``after`` under the filters fingerprint ``filters``."""
    raw = json.dumps({"v": _VERSION, "after": after, "f": filters}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, filters: str) -> int | None:
    """Return the row id a cursor resumes after (None for the first page); ValidationFailed if bad."""
    if cursor is None:
        return None
    bad = ValidationFailed([FieldProblem("cursor", "bad_cursor")])
    if not isinstance(cursor, str) or not cursor or len(cursor) > 200:
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("v") != _VERSION or data.get("f") != filters:
        raise bad
    after = data.get("after")
    if not isinstance(after, int) or isinstance(after, bool) or after < 1:
        raise bad
    return after


def check_page_size(page_size: object, maximum: int = MAX_PAGE_SIZE) -> int:
    """Return ``page_size`` if it is an integer from 1 to ``maximum``; ValidationFailed otherwise."""
    if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= maximum:
        raise ValidationFailed([FieldProblem("page_size", "integer_range", {"low": 1, "high": maximum})])
    return page_size


__all__ = ["MAX_PAGE_SIZE", "check_page_size", "decode_cursor", "encode_cursor", "fingerprint"]
