"""Schemathesis against the generated document, on SQLite: no 5xx, no answer the document does not describe,
and every operation answered 2xx at least once.

Fixed seed (derandomized Hypothesis), a bounded number of examples per operation, the explicit and
generated phases only; the calls go to the app in process (WSGI), with the tokens of a unit officer
and of the lead unit. The explicit phase gets one replayable example per operation, added here to
the app's own document (ids of the test world: a case the officer may advance, a unit without a
lifecycle for the lead to open one), so a run that only ever saw 401 or 404 cannot pass. Every check
runs but "schema-valid data is accepted": the document cannot say which events a case's state
allows, and the engine refuses the others with 422. Driven through Hypothesis directly
(schemathesis's pytest fixture loader does not run under this pytest).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import Province
from tests.web.cases_support import World

EXAMPLES = 8


def _with_examples(doc: dict[str, Any], world: World, province: Province) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    ids = {"case_id": world.case, "unit_id": province.units["THPT-TNH"].id, "attachment_id": world.attachment}
    bodies = {
        ("post", "/api/v1/units"): {"code": "EX-1", "name": "Đơn vị ví dụ", "kind": "other"},
        ("patch", "/api/v1/units/{unit_id}"): {"name": "Trường THPT Thoại Ngọc Hầu"},
        ("post", "/api/v1/cases"): {"unit_id": province.units["SNV"].id, "workflow": "qms_lifecycle"},
        ("post", "/api/v1/cases/{case_id}/events"): {
            "event": "establish_committee", "data": {"committee_decision_number": "7/QĐ", "committee_decided_on": "2026-01-05"}},
        ("post", "/api/v1/notifications/read"): {"all": True},
    }
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            for parameter in op.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in ids:
                    parameter["example"] = ids[parameter["name"]]
            body = bodies.get((method, path))
            if body is not None:
                op["requestBody"]["content"]["application/json"]["examples"] = {"replayable": {"value": body}}
    return doc


def test_every_operation_keeps_to_the_document_and_answers_2xx(
    app: Flask, tokens: dict[str, str], world: World, province: Province, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("schemathesis runs on SQLite (tests/web/test_api_matrix.py covers PostgreSQL)")
    doc = _with_examples(app.test_client().get("/api/v1/openapi.json").json, world, province)
    seen: dict[str, set[int]] = {}
    for who in ("tnh", "lead"):
        schema = schemathesis.openapi.from_dict(doc)
        schema.app = app
        headers = {"Authorization": f"Bearer {tokens[who]}"}
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case: Any) -> None:
                # run() is called within this iteration, so the loop's names are the ones meant
                response = case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])  # noqa: B023
                assert response.status_code < 500
                seen.setdefault(f"{case.method} {operation.path}", set()).add(response.status_code)  # noqa: B023

            run()
            for strategy in operation.get_strategies_from_examples():

                @given(case=strategy)
                @settings(max_examples=2, derandomize=True, deadline=None, database=None,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
                def replay(case: Any) -> None:
                    run.hypothesis.inner_test(case)  # type: ignore[attr-defined]  # noqa: B023

                replay()
    never_2xx = sorted(op for op, statuses in seen.items() if not any(200 <= s < 300 for s in statuses))
    assert not never_2xx, {op: sorted(seen[op]) for op in never_2xx}
