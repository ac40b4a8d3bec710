"""The floor: bare sqlite3 or psycopg issuing the fewest statements a durable transition needs.

No ORM, no state machine, no validation, no permission check: each step's plan (recorded data, new
timers) is computed once for all cases, and each transition is one transaction of the case UPDATE
checked against the version the floor holds (it keeps every case row it wrote, so it reads none),
the history row and, on a state change, the old state's timers cancelled and the new one inserted
(``writes.RawWriter.write(minimal=True)``). It is not a copy of what qmsflow emits: a statement
qmsflow drops shows in the ratio. Nothing written with these tools can be faster and write the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qmsflow.engine.runtime import Runtime

from ..databases import connect_sqlite, psycopg_dsn
from ..world import LIFECYCLE, WORKFLOW, local, officer
from .writes import PlannedStep, RawWriter, plan


class RawFloor:
    """Runs the lifecycle's writes on one bare DB-API connection."""

    def __init__(self, rt: Runtime, backend: str) -> None:
        self.rt = rt
        self.backend = backend
        self.name = "raw sqlite3" if backend == "sqlite" else "raw psycopg"
        self.conn: Any = None
        self.case_ids: list[tuple[int, str]] = []
        self.rows: dict[int, tuple[str, int, dict[str, Any], str, int]] = {}
        self.plans: list[PlannedStep] = []

    def start(self, url: str, cases: Sequence[tuple[int, int]]) -> None:
        """Connect and plan every step (setup). ``cases`` pairs case ids with their unit ids."""
        if self.backend == "sqlite":
            self.conn = connect_sqlite(url)
        else:
            import psycopg

            self.conn = psycopg.connect(psycopg_dsn(url))
        self.writer = RawWriter(self.conn, self.backend, self.rt.history_key)
        self.case_ids = [(case_id, officer(unit_id).username) for case_id, unit_id in cases]
        self.rows = {case_id: self.writer.load(case_id) for case_id, _ in self.case_ids}  # setup: read once
        if self.backend != "sqlite":
            self.conn.commit()  # end the reading transaction
        definition = self.rt.registry.latest(WORKFLOW)
        state = definition.spec.initial
        for step in LIFECYCLE:
            self.plans.append(plan(self.rt, definition, step, local(step.day), state))
            state = step.to_state

    def fire(self, index: int) -> int:
        """Fire step ``index`` on every case, one transaction each; return how many fired."""
        step = self.plans[index]
        conn, writer, rows = self.conn, self.writer, self.rows
        if self.backend == "sqlite":
            for case_id, actor in self.case_ids:
                conn.execute("BEGIN IMMEDIATE")
                rows[case_id] = writer.write(case_id, rows[case_id], step, actor, minimal=True)
                conn.execute("COMMIT")
        else:
            for case_id, actor in self.case_ids:
                rows[case_id] = writer.write(case_id, rows[case_id], step, actor, minimal=True)
                conn.commit()
        return len(self.case_ids)

    def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            self.conn.close()


__all__ = ["RawFloor"]
