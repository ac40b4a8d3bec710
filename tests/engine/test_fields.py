"""What an event records is checked field by field, and every problem is named."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from qmsflow.engine.definitions import FieldSpec, Label
from qmsflow.engine.fields import clean_fields

L = Label(vi="nhãn", en="label")
TODAY = date(2026, 6, 1)
SPECS = {
    "signed_on": FieldSpec(type="date", label=L, required=True, not_in_future=True),
    "number": FieldSpec(type="string", label=L, required=True, max_length=8),
    "count": FieldSpec(type="integer", label=L),
    "posted": FieldSpec(type="boolean", label=L),
    "decision": FieldSpec(type="choice", label=L, choices=["accepted", "not_accepted"]),
}


def test_valid_data_is_cleaned_into_plain_values() -> None:
    clean, problems = clean_fields(
        SPECS, {"signed_on": date(2026, 5, 4), "number": " 12/QĐ ", "count": "3", "posted": "có", "decision": "accepted"}, TODAY
    )
    assert problems == []
    assert clean == {"signed_on": "2026-05-04", "number": "12/QĐ", "count": 3, "posted": True, "decision": "accepted"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("signed_on", "2026-06-02", "cannot be after today"),
        ("signed_on", datetime(2026, 5, 4, 10, 0), "not a date and time"),
        ("signed_on", "2026-W19-1", "must be a date YYYY-MM-DD"),
        ("signed_on", 20260504, "must be a date YYYY-MM-DD"),
        ("signed_on", "2026-02-30", "is not a real date"),
        ("number", "123456789", "at most 8 characters"),
        ("number", 12, "must be text"),
        ("count", True, "whole number"),
        ("count", "-1", "cannot be negative"),
        ("count", "1.5", "whole number"),
        ("posted", "maybe", "true or false"),
        ("decision", "perhaps", "one of"),
    ],
)
def test_a_bad_value_is_named_with_the_reason(field: str, value: object, message: str) -> None:
    data = {"signed_on": "2026-05-04", "number": "1/KH"} | {field: value}
    clean, problems = clean_fields(SPECS, data, TODAY)
    assert [(p.field, message in p.message) for p in problems] == [(field, True)]


def test_missing_required_and_unknown_fields_are_all_reported_together() -> None:
    _, problems = clean_fields(SPECS, {"number": "  ", "colour": "red"}, TODAY)
    assert {(p.field, p.message) for p in problems} == {
        ("colour", "unknown field for this event"),
        ("signed_on", "required"),
        ("number", "required"),
    }


def test_data_that_is_not_an_object_is_refused() -> None:
    assert clean_fields(SPECS, ["2026-05-04"], TODAY)[1][0].field == "data"  # type: ignore[arg-type]
