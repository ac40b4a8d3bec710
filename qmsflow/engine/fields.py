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


def clean_fields(
    specs: Mapping[str, FieldSpec], raw: Mapping[str, Any] | None, today: date
) -> tuple[dict[str, Any], list[FieldProblem]]:
    """Return the cleaned values and every problem: unknown, missing, mistyped or out-of-range fields."""
    if raw is not None and not isinstance(raw, Mapping):
        return {}, [FieldProblem("data", "not_an_object")]
    raw = dict(raw or {})
    clean: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for name in raw:
        if name not in specs:
            problems.append(FieldProblem(name, "unknown_field"))
    for name, spec in specs.items():
        value = raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if spec.required:
                problems.append(FieldProblem(name, "required"))
            continue
        try:
            clean[name] = _coerce(spec, value, today)
        except _Refused as refused:
            problems.append(FieldProblem(name, refused.code, refused.params))
    return clean, problems


class _Refused(Exception):
    """A value that cannot be cleaned: the code and parameters of its FieldProblem."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(code)
        self.code, self.params = code, params


def _coerce(spec: FieldSpec, value: Any, today: date) -> Any:
    if spec.type in ("string", "text"):
        if not isinstance(value, str):
            raise _Refused("not_text")
        value = value.strip()
        if spec.max_length and len(value) > spec.max_length:
            raise _Refused("max_length", n=spec.max_length)
        return value
    if spec.type == "date":
        if isinstance(value, datetime):
            raise _Refused("date_with_time")
        if isinstance(value, date):
            day = value
        elif isinstance(value, str) and _ISO_DATE.match(value.strip()):
            try:
                day = date.fromisoformat(value.strip())
            except ValueError:
                raise _Refused("not_a_real_date") from None
        else:
            raise _Refused("not_a_date")
        if spec.not_in_future and day > today:
            raise _Refused("not_in_future", today=today.isoformat())
        return day.isoformat()
    if spec.type == "integer":
        if isinstance(value, bool):
            raise _Refused("not_a_whole_number")
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            number = int(value.strip())
        else:
            raise _Refused("not_a_whole_number")
        if number < 0:
            raise _Refused("negative")
        return number
    if spec.type == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"true", "yes", "1", "có"}:
            return True
        if text in {"false", "no", "0", "không"}:
            return False
        raise _Refused("not_a_boolean")
    if spec.type == "choice":
        if value not in (spec.choices or []):
            raise _Refused("not_a_choice", choices=list(spec.choices or []))
        return value
    raise _Refused("unsupported_type", type=spec.type)


__all__ = ["clean_fields"]
