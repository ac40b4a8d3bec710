"""The rows one lifecycle transition writes, as bare SQL through the driver (sqlite3 or psycopg).

This is the write set qmsflow's ``advance`` emits for the benchmark's lifecycle (read it with
``echo=True``): lock and read the case row, update it with the new state, data, version and chain
head, insert the history row, look for an open obligation the event fulfils, and on a state change
cancel the left state's timers and insert the new state's. The raw floor is exactly this; the
SpiffWorkflow peer does this too, next to saving its serialized workflow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from qmsflow.engine.calendar import deadline_instant
from qmsflow.engine.clock import local_date
from qmsflow.engine.definitions import Definition
from qmsflow.engine.history import CURRENT_FORM, row_hash
from qmsflow.engine.keys import Keyring, as_keyring
from qmsflow.engine.runtime import Runtime
from qmsflow.engine.timers import plan_steps, resolve_start

from ..world import Step


@dataclass(frozen=True)
class PlannedStep:
    """Everything about one step that is the same for every case: what any implementation computes."""

    event: str
    at: datetime
    recorded: dict[str, Any]
    to_state: str
    fulfils: tuple[str, ...]
    new_timers: tuple[dict[str, Any], ...]


def state_timers(rt: Runtime, definition: Definition, state: str, data: Mapping[str, Any], on: date) -> list[dict[str, Any]]:
    """Plan the timers of ``state`` entered on ``on`` with the engine's pure calendar functions."""
    rows = []
    for name, spec in definition.spec.states[state].timers.items():
        start = resolve_start(spec, dict(data), on, None)
        due = rt.calendar.due_date(start, spec.length, spec.unit)
        steps = plan_steps(spec, definition.ladder(f"{state}.{name}"), start, due, rt.calendar)
        rows.append(
            {"name": name, "state": state, "start_date": start, "due_date": due, "due_at": deadline_instant(due), "next_at": steps[0].at}
        )
    return rows


def plan(rt: Runtime, definition: Definition, step: Step, at: datetime, from_state: str) -> PlannedStep:
    """Precompute one step for every case (the floor may; it is the same for all of them)."""
    spec = definition.spec.events[step.event]
    recorded = {**step.data, **spec.set}
    fulfils = tuple(n for n, ob in definition.spec.obligations.items() if step.event in ob.fulfilled_by)
    timers = () if step.to_state == from_state else tuple(state_timers(rt, definition, step.to_state, recorded, local_date(at)))
    return PlannedStep(step.event, at, recorded, step.to_state, fulfils, timers)


def naive_utc(at: datetime) -> datetime:
    """Return an aware instant as the naive UTC value qmsflow stores."""
    return at.astimezone(UTC).replace(tzinfo=None)


class RawWriter:
    """Issues the transition's SQL on one bare DB-API connection; the caller begins and commits."""

    def __init__(self, conn: Any, backend: str, keyring: Keyring | bytes) -> None:
        self.conn = conn
        self.sqlite = backend == "sqlite"
        # Sign as the engine does (history.CURRENT_FORM, the current key's id), so the heads compare.
        self.key = as_keyring(keyring).current
        mark = "?" if self.sqlite else "%s"
        lock = "" if self.sqlite else " FOR UPDATE"
        self.sql_case = f"SELECT id, state, version, data, history_head, history_length FROM cases WHERE id = {mark}{lock}"
        self.sql_update = (
            f"UPDATE cases SET state={mark}, version={mark}, data={mark}, updated_at={mark}, history_head={mark}, "
            f"history_length={mark} WHERE id = {mark}"
        )
        # The floor's version check: the row it last wrote is the row it updates, or nothing is written.
        self.sql_update_checked = self.sql_update + f" AND version = {mark}"
        self.sql_history = (
            "INSERT INTO history (case_id, seq, at, kind, event, from_state, to_state, actor, data, prev_hash, hash, "
            f"key_id, form) VALUES ({', '.join([mark] * 13)})"
        )
        self.sql_obligation = (
            f"SELECT id, cycle FROM obligations WHERE case_id = {mark} AND name = {mark} AND status = 'open' ORDER BY id LIMIT 1"
        )
        self.sql_cancel = (
            f"UPDATE timers SET status = 'cancelled', next_at = NULL, closed_at = {mark} "
            f"WHERE case_id = {mark} AND status = 'pending' AND kind = 'state' AND state = {mark}"
        )
        self.sql_timer = (
            "INSERT INTO timers (case_id, name, kind, state, obligation_id, start_date, due_date, due_at, status, level, "
            f"next_step, next_at, created_at, closed_at) VALUES ({', '.join([mark] * 14)})"
        )
        self._json: Any
        self._dt: Any
        self._date: Any
        if self.sqlite:
            self._json = json.dumps
            self._dt = _sqlite_datetime
            self._date = date.isoformat
        else:
            from psycopg.types.json import Jsonb

            self._json = Jsonb
            self._dt = naive_utc
            self._date = _same

    def load(self, case_id: int) -> tuple[str, int, dict[str, Any], str, int]:
        """Read (and on PostgreSQL lock) the case row: state, version, data, chain head, chain length."""
        _id, state, version, data, head, length = self.conn.execute(self.sql_case, (case_id,)).fetchone()
        if isinstance(data, str):
            data = json.loads(data)
        return state, version, data, head, length

    def write(
        self,
        case_id: int,
        row: tuple[str, int, dict[str, Any], str, int],
        step: PlannedStep,
        actor: str,
        data: dict[str, Any] | None = None,
        timers: tuple[dict[str, Any], ...] | list[dict[str, Any]] | None = None,
        *,
        minimal: bool = False,
    ) -> tuple[str, int, dict[str, Any], str, int]:
        """Write the transition: case row, history row, obligation lookup, timers; return the case row after it.

        ``minimal`` writes what a durable transition needs and no more (the floor): the case UPDATE
        checked against the version the caller holds (no SELECT first), the history row and, on a state
        change, the timers; no obligation lookup (none can be open in the benchmark's lifecycle).
        """
        from_state, version, old_data, head, length = row
        merged = data if data is not None else {**old_data, **step.recorded}
        seq = length + 1
        fields = {
            "at": step.at,
            "kind": "transition",
            "event": step.event,
            "from_state": from_state,
            "to_state": step.to_state,
            "actor": actor,
            "data": step.recorded,
        }
        digest = row_hash(self.key.secret, case_id, seq, fields, head, self.key.key_id)
        at = self._dt(step.at)
        execute = self.conn.execute
        if minimal:
            cur = execute(self.sql_update_checked, (step.to_state, version + 1, self._json(merged), at, digest, seq, case_id, version))
            if cur.rowcount != 1:
                raise RuntimeError(f"case {case_id} is not at version {version}")
        else:
            execute(self.sql_update, (step.to_state, version + 1, self._json(merged), at, digest, seq, case_id))
        execute(
            self.sql_history,
            (case_id, seq, at, "transition", step.event, from_state, step.to_state, actor, self._json(step.recorded), head, digest,
             self.key.key_id, CURRENT_FORM),
        )
        for name in () if minimal else step.fulfils:
            if execute(self.sql_obligation, (case_id, name)).fetchone() is not None:
                raise RuntimeError("the benchmark's lifecycle has no open obligation at this step")
        if step.to_state != from_state:
            execute(self.sql_cancel, (at, case_id, from_state))
            for t in step.new_timers if timers is None else timers:
                execute(
                    self.sql_timer,
                    (
                        case_id, t["name"], "state", t["state"], None, self._date(t["start_date"]), self._date(t["due_date"]),
                        self._dt(t["due_at"]), "pending", 0, 0, self._dt(t["next_at"]), at, None,
                    ),
                )
        return step.to_state, version + 1, merged, digest, seq


def _same(value: Any) -> Any:
    return value


def _sqlite_datetime(at: datetime) -> str:
    # SQLAlchemy's SQLite DateTime storage format, so qmsflow reads the floor's rows back unchanged
    return naive_utc(at).strftime("%Y-%m-%d %H:%M:%S.%f")


__all__ = ["PlannedStep", "RawWriter", "naive_utc", "plan", "state_timers"]
