"""SpiffWorkflow (pinned in the ``test`` extra) running the same lifecycle as BPMN.

Written the way SpiffWorkflow's documentation runs a workflow: ``BpmnParser`` parses
``qms_lifecycle.bpmn`` once into a spec, a ``BpmnWorkflow`` is created per case and run with
``do_engine_steps()``, and each user action completes the READY manual task (``task.data`` updated,
then ``task.run()``).

Storage follows "Optimizing Serializations" in SpiffWorkflow's serialization docs, which advise
separating serialized workflow specs from instance data, as the example app's SQLite serializer
(``spiff_example/serializer/sqlite/serializer.py`` in spiff-example-cli) does: a ``WorkflowConverter``
replaces the default ``BpmnWorkflowConverter`` in a copy of ``DEFAULT_CONFIG`` (the example assigns
into the library's dict; a copy has the same effect without changing it for the whole process), and
its ``to_dict`` calls ``super(BpmnWorkflowConverter, self).to_dict`` so that ``spec`` and
``subprocess_specs`` are left out and ``subprocesses`` is empty (this BPMN has no call activities, so
there are none). The spec is converted with the serializer's ``to_dict`` and written once, in
``start()``, to ``spiff_specs``; each case's row in ``spiff_workflows`` holds only the instance JSON
(``serialize_json`` through the configured registry: the task tree, workflow data and events plus the
``serializer_version`` key: 5.7 to 6.6 KB over the lifecycle, where the full ``serialize_json`` with
the ~6.3 KB spec was 12.0 to 12.9 KB). It is saved after every step in the step's transaction and
read back from the database before the next, as a web request would. The example does not use
``serialize_json``; it is kept here so that the version key is stored and the load below can run
``migrate`` as ``deserialize_json`` does.

Loading mirrors the example's ``_get_workflow``: it reads the row through a view (``spiff_workflow``,
as the example reads its ``workflow`` view) that joins the case's instance JSON to its spec's JSON,
puts the spec's dict back under ``spec`` in the instance dict, and hands that to the serializer's
``migrate`` and ``from_dict``, so the spec is rebuilt from its JSON on every load. The example's view
splices the spec into the instance JSON with SQLite's ``json_insert``; this view returns the two
columns and the splice is done in Python, the same result on SQLite and PostgreSQL. The spec is re-read
rather than its dict kept in the peer: ``from_dict`` consumes the dicts it is given (it pops keys and
adds the spec object to each task spec's dict), so a cached dict would need a ``copy.deepcopy`` per
load, which costs more than ``json.loads`` of the spec's ~6 KB, and re-reading is what the example does.

SpiffWorkflow keeps no history rows, deadlines or queryable state, so next to its serialization the
peer writes the same rows as the raw floor (``writes.RawWriter``) on the same bare connection: the
cheapest way to give it what qmsflow gives. Its per-transition cost over the floor is SpiffWorkflow's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.parser import BpmnParser
from SpiffWorkflow.bpmn.serializer import DEFAULT_CONFIG, BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter
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


class WorkflowConverter(BpmnWorkflowConverter):
    """The example app's converter: a top-level workflow's instance data, without its spec."""

    def to_dict(self, workflow: BpmnWorkflow) -> dict[str, Any]:
        """Skip ``BpmnWorkflowConverter.to_dict`` (which adds the specs) and add back only the instance parts."""
        dct: dict[str, Any] = super(BpmnWorkflowConverter, self).to_dict(workflow)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        dct["subprocesses"] = {}
        return dct


def instance_serializer() -> BpmnWorkflowSerializer:
    """A serializer whose registry uses ``WorkflowConverter`` for ``BpmnWorkflow``, configured as the example does."""
    config = dict(DEFAULT_CONFIG)
    config[BpmnWorkflow] = WorkflowConverter
    return BpmnWorkflowSerializer(registry=BpmnWorkflowSerializer.configure(config))


class SpiffLifecycle:
    """SpiffWorkflow's BPMN engine, its spec and instance JSON stored apart, and the same rows on a bare connection."""

    name = "SpiffWorkflow 3.2.0"

    def __init__(self, rt: Runtime, backend: str) -> None:
        self.rt = rt
        self.backend = backend
        self.definition = rt.registry.latest(WORKFLOW)
        parser = BpmnParser()
        parser.add_bpmn_file(str(BPMN_FILE))
        self.spec = parser.get_spec("qms_lifecycle")
        self.serializer = instance_serializer()
        self.conn: Any = None
        self.cases: list[tuple[int, str]] = []

    def start(self, url: str, cases: Sequence[tuple[int, int]]) -> None:
        """Create the spec and instance tables and the view, store the spec once and each case's started workflow (setup)."""
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
        self.conn.execute("CREATE TABLE spiff_specs (id INTEGER PRIMARY KEY, name TEXT NOT NULL, serialization TEXT NOT NULL)")
        self.conn.execute(
            "CREATE TABLE spiff_workflows (case_id INTEGER PRIMARY KEY REFERENCES cases (id), "
            "spec_id INTEGER NOT NULL REFERENCES spiff_specs (id), serialization TEXT NOT NULL)"
        )
        self.conn.execute(
            "CREATE VIEW spiff_workflow AS SELECT w.case_id, w.serialization, s.serialization AS spec "
            "FROM spiff_workflows w JOIN spiff_specs s ON s.id = w.spec_id"
        )
        spec_id = 1
        self.conn.execute(
            f"INSERT INTO spiff_specs (id, name, serialization) VALUES ({self.mark}, {self.mark}, {self.mark})",
            (spec_id, self.spec.name, json.dumps(self.serializer.to_dict(self.spec))),
        )
        for case_id, _ in self.cases:
            workflow = BpmnWorkflow(self.spec)
            workflow.do_engine_steps()
            self.conn.execute(
                f"INSERT INTO spiff_workflows (case_id, spec_id, serialization) VALUES ({self.mark}, {self.mark}, {self.mark})",
                (case_id, spec_id, self.serializer.serialize_json(workflow)),
            )
        self._commit()
        self.sql_load = f"SELECT serialization, spec FROM spiff_workflow WHERE case_id = {self.mark}"
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

    def _load(self, case_id: int) -> BpmnWorkflow:
        """Read the case's instance JSON and its spec's JSON, put the spec back in, and restore the workflow."""
        serialization, spec = self.conn.execute(self.sql_load, (case_id,)).fetchone()
        dct = json.loads(serialization)
        dct["spec"] = json.loads(spec)
        self.serializer.migrate(dct)
        return self.serializer.from_dict(dct)

    def _advance(self, case_id: int, event: str, data: dict[str, Any], actor: str, at: datetime) -> None:
        row = self.writer.load(case_id)
        workflow = self._load(case_id)
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
        workflow = self._load(case_id)
        if self.backend != "sqlite":
            self.conn.rollback()
        task = workflow.get_next_task(state=TaskState.READY, manual=True)
        return STATE_OF_TASK[task.task_spec.bpmn_id] if task else "end"

    def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            self.conn.close()


__all__ = ["BPMN_FILE", "STATE_OF_TASK", "SpiffLifecycle", "WorkflowConverter", "instance_serializer"]
