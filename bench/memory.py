"""Memory per in-flight case: cases loaded for a sweep, qmsflow against one ``Machine`` per case.

Both sides load the same ORM rows (``select(Case)``, as the sweep's claim does) and keep them; qmsflow
adds the ``CaseModel`` its shared machine fires against, the naive version wraps each row in its own
``transitions.Machine`` (the naive peer's configuration). tracemalloc counts every byte allocated
while loading, after a full collection. qmsflow loads all the cases; the naive side loads a sample,
because building a Machine is linear in cases (about 2 ms and 40 KiB each) and 100,000 of them would
take minutes of the run for the same per-case figure.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from transitions import Machine

from qmsflow.engine.db import Database
from qmsflow.engine.machine import CaseModel
from qmsflow.engine.models import Case

from .bulk import CASE_COLUMNS, HISTORY_COLUMNS, Loader, opened_row
from .databases import Servers, migrated, scratch
from .peers.naive import NaiveLifecycle
from .report import Report, Row, Target
from .world import FINAL_STATE, HISTORY_KEY, LIFECYCLE, START_DAY, VALID_FROM, WORKFLOW, local, runtime

TARGET = Target("<=", 0.1)


def final_data() -> dict[str, Any]:
    """The data a case holds at the end of the benchmark's lifecycle."""
    rt = runtime()
    definition = rt.registry.latest(WORKFLOW)
    data: dict[str, Any] = {}
    for step in LIFECYCLE:
        data.update(step.data)
        data.update(definition.spec.events[step.event].set)
    return data


def load_announced_cases(url: str, count: int) -> None:
    """Insert ``count`` schools, each with a lifecycle case in its final state (setup, not timed)."""
    loader = Loader(url)
    at = local(START_DAY)
    data = final_data()
    loader.insert_units([(i, f"S{i}", f"Trường số {i}", "high_school", False, VALID_FROM, None) for i in range(1, count + 1)])
    heads: dict[int, str] = {}
    rows: list[tuple[Any, ...]] = []
    for i in range(1, count + 1):
        _, digest = opened_row(HISTORY_KEY, i, at, "lead", FINAL_STATE, {})
        heads[i] = digest
        rows.append((i, 1, at, "opened", None, None, FINAL_STATE, "lead", {}, "", digest))
    loader.insert(
        "cases",
        CASE_COLUMNS,
        [(i, i, WORKFLOW, 1, FINAL_STATE, 9, data, None, at, at, None, heads[i], 1) for i in range(1, count + 1)],
    )
    loader.insert("history", HISTORY_COLUMNS, rows)
    loader.reset_sequences(["units", "unit_versions", "cases", "history"])
    loader.analyze()


def per_case_bytes(db: Database, count: int, wrap: Callable[[Case], Any]) -> tuple[float, float, int]:
    """Load ``count`` cases and ``wrap`` each; return (bytes per case, bytes per wrapper, cases loaded)."""
    gc.collect()
    tracemalloc.start()
    try:
        with db.read() as session:
            base = tracemalloc.get_traced_memory()[0]
            cases = list(session.scalars(select(Case).order_by(Case.id).limit(count)))
            gc.collect()
            rows = tracemalloc.get_traced_memory()[0]
            kept = [wrap(c) for c in cases]
            gc.collect()
            total = tracemalloc.get_traced_memory()[0]
            loaded = sum(1 for c in cases if c.state == FINAL_STATE)
            del kept, cases
    finally:
        tracemalloc.stop()
    return (total - base) / count, (total - rows) / count, loaded


def run(report: Report, servers: Servers, backends: list[str], scale: float, smoke: bool) -> None:
    """Measure on the first backend asked for (Python memory barely depends on it)."""
    backend = backends[0]
    cases = 300 if smoke else max(1000, int(100_000 * scale))
    sample = 100 if smoke else max(200, min(cases, int(5_000 * scale)))
    report.sizes["memory"] = f"{cases:,} cases loaded for qmsflow, {sample:,} for one Machine per case ({backend})"
    rt = runtime()
    naive = NaiveLifecycle(rt, backend)

    def machine(case: Case) -> Machine:
        return Machine(
            model=case, states=naive.states, transitions=naive.transitions, initial=case.state,
            auto_transitions=False, send_event=True,
        )

    with scratch(servers, backend, "memory") as url:
        db = migrated(url)
        try:
            load_announced_cases(url, cases)
            ours, ours_model, ours_loaded = per_case_bytes(db, cases, lambda c: CaseModel(state=c.state, data=c.data))
            theirs, theirs_machine, theirs_loaded = per_case_bytes(db, sample, machine)
        finally:
            db.dispose()
    check = "ok" if ours_loaded == cases and theirs_loaded == sample else f"loaded {ours_loaded}/{cases}, {theirs_loaded}/{sample}"
    report.add(
        Row("memory per loaded case (row + engine)", backend, "qmsflow", ours / 1024, "one Machine per case", theirs / 1024, "KiB", TARGET, check)
    )
    report.add(
        Row("memory per case, engine object only", backend, "CaseModel", ours_model, "Machine", theirs_machine, "B", None, check)
    )


NOTES = [
    "Memory: tracemalloc, after gc.collect(), counts what loading the cases allocates: the ORM rows with "
    "their data (17 fields) and identity map, plus qmsflow's CaseModel or the naive version's Machine. "
    "The second row leaves the ORM row out and compares the per-case engine objects alone.",
]

__all__ = ["NOTES", "run"]
