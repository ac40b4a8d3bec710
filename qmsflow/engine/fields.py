"""Checking the data an event or a new case records against the definition's field specs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from .definitions import FieldSpec
from .errors import FieldProblem

# Only the calendar date form: Python also reads week dates and digits-only strings as dates.
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _Bad(ValueError):
    """A value's problem: the English message, its code and the values the sentence needs."""

    def __init__(self, message: str, code: str, **params: object) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


def clean_fields(
    specs: Mapping[str, FieldSpec], raw: Mapping[str, Any] | None, today: date
) -> tuple[dict[str, Any], list[FieldProblem]]:
    """Return the cleaned values and every problem: unknown, missing, mistyped or out-of-range fields."""
    if raw is not None and not isinstance(raw, Mapping):
        return {}, [FieldProblem("data", "must be an object of field names and values")]
    raw = dict(raw or {})
    clean: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for name in raw:
        if name not in specs:
            problems.append(FieldProblem(name, "unknown field for this event", "unknown"))
    for name, spec in specs.items():
        value = raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if spec.required:
                problems.append(FieldProblem(name, "required", "required"))
            continue
        try:
            clean[name] = _coerce(spec, value, today)
        except _Bad as exc:
            problems.append(FieldProblem(name, str(exc), exc.code, exc.params))
    return clean, problems


def _coerce(spec: FieldSpec, value: Any, today: date) -> Any:
    if spec.type in ("string", "text"):
        if not isinstance(value, str):
            raise _Bad("must be text", "text")
        value = value.strip()
        if spec.max_length and len(value) > spec.max_length:
            raise _Bad(f"at most {spec.max_length} characters", "too_long", max_length=spec.max_length)
        return value
    if spec.type == "date":
        if isinstance(value, datetime):
            raise _Bad("must be a date YYYY-MM-DD, not a date and time", "date")
        if isinstance(value, date):
            day = value
        elif isinstance(value, str) and _ISO_DATE.match(value.strip()):
            try:
                day = date.fromisoformat(value.strip())
            except ValueError:
                raise _Bad("is not a real date", "date_unreal") from None
        else:
            raise _Bad("must be a date YYYY-MM-DD", "date")
        if spec.not_in_future and day > today:
            raise _Bad(f"cannot be after today ({today.isoformat()})", "date_in_future", today=today.isoformat())
        return day.isoformat()
    if spec.type == "integer":
        if isinstance(value, bool):
            raise _Bad("must be a whole number", "integer")
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            number = int(value.strip())
        else:
            raise _Bad("must be a whole number", "integer")
        if number < 0:
            raise _Bad("cannot be negative", "negative")
        return number
    if spec.type == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"true", "yes", "1", "có"}:
            return True
        if text in {"false", "no", "0", "không"}:
            return False
        raise _Bad("must be true or false", "boolean")
    if spec.type == "choice":
        if value not in (spec.choices or []):
            raise _Bad(f"one of {spec.choices}", "choice", choices=list(spec.choices or []))
        return value
    raise _Bad(f"unsupported type {spec.type}", "type")


__all__ = ["clean_fields"]
