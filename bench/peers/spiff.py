"""SpiffWorkflow (pinned in the ``test`` extra) running the same lifecycle as BPMN.

Written the way SpiffWorkflow's documentation runs a workflow: ``BpmnParser`` parses
``qms_lifecycle.bpmn`` once into a spec, a ``BpmnWorkflow`` is created per case and run with
``do_engine_steps()``, each user action completes the READY manual task (``task.data`` updated, then
``task.run()``), and the whole workflow is stored with ``BpmnWorkflowSerializer.serialize_json``
after every step and restored with ``deserialize_json`` before the next, as a web request would.

SpiffWorkflow keeps no history rows, deadlines or queryable state, so next to its serialization the
peer writes the same rows as the raw floor (``writes.RawWriter``) on the same bare connection: the
cheapest way to give it what qmsflow gives. Its per-transition cost over the floor is SpiffWorkflow's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.parser import BpmnParser
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.util.task import TaskState

from qmsflow.engine.clock import local_date
from qmsflow.engine.fields import clean_fields
from qmsflow.engine.runtime import Runtime

from ..databases import connect_sqlite, psycopg_dsn
from ..world import LIFECYCLE, WORKFLOW, local, officer
from .writes import PlannedStep, RawWriter, state_timers

BPMN_FILE = Path(__file__).with_name("qms_lifecycle.bpmn")

# Which qmsflow state a case is in while each user task waits (the BPMN is a linear chain).
STATE_OF_TASK = {
    "approve_plan": "planned",
    "establish_committee": "building",
    "issue_documents": "building",
    "start_applying": "building",
    "record_internal_audit": "applying",
    "record_management_review": "applying",
    "confirm_effective": "applying",
    "announce": "applying",
    "notify_lead": "announced",
}


class SpiffLifecycle:
    """SpiffWorkflow's BPMN engine, its JSON serializer, and the same rows on a bare connection."""

    name = "SpiffWorkflow 3.2.0"

    def __init__(self, rt: Runtime, backend: str) -> None:
        self.rt = rt
        self.backend = backend
        self.definition = rt.registry.latest(WORKFLOW)
        parser = BpmnParser()
        parser.add_bpmn_file(str(BPMN_FILE))
        self.spec = parser.get_spec("qms_lifecycle")
        self.serializer = BpmnWorkflowSerializer()
        self.conn: Any = None
        self.cases: list[tuple[int, str]] = []

    def start(self, url: str, cases: Sequence[tuple[int, int]]) -> None:
        """Create the serialization table and each case's started workflow (setup)."""
        if self.backend == "sqlite":
            self.conn = connect_sqlite(url)
            self.mark = "?"
        else:
            import psycopg

            self.conn = psycopg.connect(psycopg_dsn(url))
            self.mark = "%s"
        self.writer = RawWriter(self.conn, self.backend, self.rt.history_key)
        self.cases = [(case_id, officer(unit_id).username) for case_id, unit_id in cases]
        if self.backend == "sqlite":
            self.conn.execute("BEGIN")
        self.conn.execute(
            "CREATE TABLE spiff_workflows (case_id INTEGER PRIMARY KEY REFERENCES cases (id), serialization TEXT NOT NULL)"
        )
        for case_id, _ in self.cases:
            workflow = BpmnWorkflow(self.spec)
            workflow.do_engine_steps()
            self.conn.execute(
                f"INSERT INTO spiff_workflows (case_id, serialization) VALUES ({self.mark}, {self.mark})",
                (case_id, self.serializer.serialize_json(workflow)),
            )
        self._commit()
        self.sql_load = f"SELECT serialization FROM spiff_workflows WHERE case_id = {self.mark}"
        self.sql_save = f"UPDATE spiff_workflows SET serialization = {self.mark} WHERE case_id = {self.mark}"

    def fire(self, index: int) -> int:
        """Complete step ``index``'s user task on every case, one transaction each."""
        step = LIFECYCLE[index]
        at = local(step.day)
        for case_id, actor in self.cases:
            if self.backend == "sqlite":
                self.conn.execute("BEGIN IMMEDIATE")
            self._advance(case_id, step.event, dict(step.data), actor, at)
            self._commit()
        return len(self.cases)

    def _commit(self) -> None:
        if self.backend == "sqlite":
            self.conn.execute("COMMIT")
        else:
            self.conn.commit()

    def _advance(self, case_id: int, event: str, data: dict[str, Any], actor: str, at: datetime) -> None:
        row = self.writer.load(case_id)
        (serialization,) = self.conn.execute(self.sql_load, (case_id,)).fetchone()
        workflow = self.serializer.deserialize_json(serialization)
        task = workflow.get_next_task(state=TaskState.READY, manual=True)
        if task is None or task.task_spec.bpmn_id != event:
            raise ValueError(f"{event} is not the waiting task of case {case_id}")
        spec = self.definition.spec.events[event]
        clean, problems = clean_fields(spec.fields, data, local_date(at))
        if problems:
            raise ValueError(problems)
        recorded = {**clean, **spec.set}
        task.data.update(recorded)
        task.run()
        workflow.do_engine_steps()
        waiting = workflow.get_next_task(state=TaskState.READY, manual=True)
        to_state = STATE_OF_TASK[waiting.task_spec.bpmn_id] if waiting else "end"
        merged = dict(waiting.data) if waiting else dict(task.data)
        self.conn.execute(self.sql_save, (self.serializer.serialize_json(workflow), case_id))
        timers = state_timers(self.rt, self.definition, to_state, merged, local_date(at)) if to_state != row[0] else []
        fulfils = tuple(n for n, ob in self.definition.spec.obligations.items() if event in ob.fulfilled_by)
        self.writer.write(case_id, row, PlannedStep(event, at, recorded, to_state, fulfils, ()), actor, data=merged, timers=timers)

    def state_of(self, case_id: int) -> str:
        """Return the state SpiffWorkflow's stored workflow is waiting in (for the final check)."""
        (serialization,) = self.conn.execute(self.sql_load, (case_id,)).fetchone()
        if self.backend != "sqlite":
            self.conn.rollback()
        task = self.serializer.deserialize_json(serialization).get_next_task(state=TaskState.READY, manual=True)
        return STATE_OF_TASK[task.task_spec.bpmn_id] if task else "end"

    def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            self.conn.close()


__all__ = ["BPMN_FILE", "STATE_OF_TASK", "SpiffLifecycle"]
