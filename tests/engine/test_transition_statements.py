"""Statements per transition, by step kind, counted with a SQLAlchemy event listener: counts, never timings.

A data-only step is the savepoint pair, the case row locked and read, the history row and the case
UPDATE (5); a state change adds the calendar check, the old state's timers cancelled and the new
state's timer (8). An event that fulfils an obligation looks for it only where one can be open
(``cases.may_be_open_in``); the tests below break when that shortcut's invariant does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event

import qmsflow
from bench.world import LIFECYCLE
from qmsflow.engine import Database, FixedClock, Registry, Runtime, advance, open_case
from qmsflow.engine.cases import may_be_open_in
from qmsflow.workflows import DIRECTORY as WORKFLOWS
from tests.conftest import Province, local

# What each step of the benchmark's lifecycle sends, by kind (bench/transitions_rate.py measures the same steps).
# Each includes the integrators' event row (qmsflow/engine/events.py), one INSERT per transition.
DATA_ONLY = 6
STATE_CHANGE = 9
EXPECTED = {
    "approve_plan": STATE_CHANGE,
    "establish_committee": DATA_ONLY,
    "issue_documents": DATA_ONLY,
    "start_applying": STATE_CHANGE,
    "record_internal_audit": DATA_ONLY,  # fulfils the yearly audit, which cannot be open before maintaining
    "record_management_review": DATA_ONLY,
    "confirm_effective": DATA_ONLY,
    "announce": STATE_CHANGE,
}


@contextmanager
def counting(db: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", before)


def test_each_step_kind_sends_its_statements_and_no_more(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> None:
    clock.set(local(LIFECYCLE[0].day, 8))
    with db.write() as session:
        case_id = open_case(session, rt, province.actors["lead"], province.units["THPT-TNH"], "qms_lifecycle").id
    counts = {}
    for step in LIFECYCLE:
        clock.set(local(step.day))
        with counting(db) as statements, db.write() as session:
            result = advance(session, rt, province.actors["tnh"], case_id, step.event, step.data)
        assert result.to_state == step.to_state
        counts[step.event] = len(statements)
    assert counts == EXPECTED


def test_the_obligation_lookup_runs_where_an_obligation_can_be_open(registry: Registry) -> None:
    open_in = may_be_open_in(registry.latest("qms_lifecycle"))
    assert "maintaining" in open_in["yearly_internal_audit"]
    assert "applying" not in open_in["yearly_internal_audit"]
    # legal_update opens on an event: it can be open wherever that event leads and after
    assert open_in["legal_update"] >= {"maintaining"}


def test_a_definition_that_loops_back_keeps_the_lookup(tmp_path: Path) -> None:
    # If a case could go back from maintaining to applying, a yearly audit could be open in applying:
    # the shortcut must then look there too.
    text = (WORKFLOWS / "qms_lifecycle.v1.yaml").read_text("utf-8")
    loop = (
        "  back_to_applying:\n"
        '    label: {vi: "Quay lại áp dụng", en: "Back to applying"}\n'
        "    roles: [lead]\n"
        "    from: [maintaining]\n"
        "    to: applying\n"
    )
    (tmp_path / "qms_lifecycle.v1.yaml").write_text(text.replace("  withdraw:\n", loop + "  withdraw:\n", 1), "utf-8")
    looped = Registry.from_directory(tmp_path).latest("qms_lifecycle")
    assert "applying" in may_be_open_in(looped)["yearly_internal_audit"]


def test_only_the_case_services_create_obligations() -> None:
    # The shortcut's invariant: an obligation is opened only by cases._open_obligation. Another module
    # that creates obligation rows (a conversion, an import) must extend cases.may_be_open_in first.
    package = Path(qmsflow.__file__).parent
    creates = re.compile(r"\bObligation\(|insert\(\s*Obligation\b|INSERT INTO obligations", re.I)
    found = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "migrations" not in path.parts and creates.search(path.read_text("utf-8"))
    )
    assert found == ["engine/cases.py", "engine/models.py"]
