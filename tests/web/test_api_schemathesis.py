"""Schemathesis against the generated document, on SQLite: no 5xx, no answer the document does not describe.

Fixed seed (derandomized Hypothesis), a bounded number of examples per operation, the explicit and
generated phases only; the calls go to the app in process (WSGI), with the tokens of a unit
officer and of the lead unit. Every check runs but "schema-valid data is accepted": the document
cannot say which events a case's state allows, and the engine refuses the others with 422. Driven through Hypothesis directly (schemathesis's pytest fixture
loader does not run under this pytest).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.web.cases_support import World

EXAMPLES = 8


@pytest.mark.parametrize("who", ["tnh", "lead"])
def test_every_operation_keeps_to_the_document(app: Flask, tokens: dict[str, str], world: World, backend: str, who: str) -> None:
    if backend != "sqlite":
        pytest.skip("schemathesis runs on SQLite (tests/web/test_api_matrix.py covers PostgreSQL)")
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {tokens[who]}"}
    seen: dict[str, set[int]] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            # A schema-valid request may still be refused by the engine's rules (an event not allowed from
            # this state, a stage of another workflow): 4xx answers are checked against the document instead.
            response = case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
            assert response.status_code < 500
            seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)

        run()
    print({k: sorted(v) for k, v in sorted(seen.items())})
