"""The naive version a user would write: one ``transitions.Machine`` per loaded case, plus the ORM.

It follows the transitions README: the ORM row *is* the model, a ``Machine(model=case, ...)`` is built
around it when the case is loaded, the event is fired with ``case.trigger(event, ...)``, guards are
``conditions`` and the bookkeeping is an ``after`` callback. It is written carefully, not as a straw
man: ``auto_transitions=False`` (fewer transitions to build), a session per request with
``with db.write()``, the same pragmas and locking as qmsflow, the same field cleaning and guards.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from transitions import Machine
from transitions.core import EventData

from qmsflow.engine.clock import local_date
from qmsflow.engine.db import Database, make_engine
from qmsflow.engine.fields import clean_fields
from qmsflow.engine.history import CURRENT_FORM, row_hash
from qmsflow.engine.models import Case, HistoryEntry, Obligation, Timer
from qmsflow.engine.runtime import Runtime

from ..world import LIFECYCLE, WORKFLOW, officer
from .writes import state_timers


class NaiveLifecycle:
    """A Machine per case, the SQLAlchemy ORM, one transaction per transition."""

    name = "naive Machine-per-case + ORM"

    def __init__(self, rt: Runtime, backend: str) -> None:
        self.rt = rt
        self.definition = rt.registry.latest(WORKFLOW)
        spec = self.definition.spec
        self.states = list(spec.states)
        self.transitions: list[dict[str, Any]] = []
        for t in self.definition.transitions:
            conditions: list[Any] = [self._guard(t.event)]
            if t.when is not None:
                when = t.when
                conditions.append(lambda ev, when=when: when.evaluate(ev.kwargs["merged"]))
            self.transitions.append(
                {"trigger": t.event, "source": t.source, "dest": t.dest, "conditions": conditions, "after": self._record}
            )
        self.db: Database | None = None
        self.cases: list[tuple[int, str]] = []

    def _guard(self, event: str) -> Any:
        guard = self.definition.guards.get(event)
        if guard is None:
            return lambda ev: True
        return lambda ev: guard.evaluate(ev.kwargs["merged"])

    def start(self, url: str, cases: Sequence[tuple[int, int]]) -> None:
        """Open the engine (setup)."""
        self.db = Database(make_engine(url, application_name="bench-naive"))
        self.cases = [(case_id, officer(unit_id).username) for case_id, unit_id in cases]

    def fire(self, index: int) -> int:
        """Fire step ``index`` on every case, one transaction each."""
        step = LIFECYCLE[index]
        assert self.db is not None
        for case_id, actor in self.cases:
            with self.db.write() as session:
                self.advance(session, case_id, step.event, dict(step.data), actor)
        return len(self.cases)

    def advance(self, session: Session, case_id: int, event: str, data: dict[str, Any], actor: str) -> Case:
        """Load the case, wrap it in its own Machine, fire the event."""
        now = self.rt.clock.now()
        case = session.get(Case, case_id, with_for_update=True)
        if case is None:
            raise LookupError(case_id)
        Machine(
            model=case,
            states=self.states,
            transitions=self.transitions,
            initial=case.state,
            auto_transitions=False,
            send_event=True,
        )
        spec = self.definition.spec.events[event]
        clean, problems = clean_fields(spec.fields, data, local_date(now))
        if problems:
            raise ValueError(problems)
        recorded = {**clean, **spec.set}
        fired = case.trigger(  # type: ignore[attr-defined]
            event, session=session, recorded=recorded, merged={**case.data, **recorded}, actor=actor, now=now
        )
        if not fired:
            raise ValueError(f"{event} refused")
        return case

    def _record(self, ev: EventData) -> None:
        case: Case = ev.model  # type: ignore[assignment]
        session: Session = ev.kwargs["session"]
        now: datetime = ev.kwargs["now"]
        recorded = ev.kwargs["recorded"]
        from_state = ev.transition.source if ev.transition else case.state
        case.data = ev.kwargs["merged"]
        case.version += 1
        case.updated_at = now
        fields = {
            "at": now, "kind": "transition", "event": ev.event.name, "from_state": from_state, "to_state": case.state,
            "actor": ev.kwargs["actor"], "data": recorded,
        }
        seq = case.history_length + 1
        key = self.rt.keyring.current  # signed as the engine signs (history.CURRENT_FORM), so the heads compare
        digest = row_hash(key.secret, case.id, seq, fields, case.history_head, key.key_id)
        session.add(HistoryEntry(case_id=case.id, seq=seq, prev_hash=case.history_head, hash=digest, key_id=key.key_id,
                                 form=CURRENT_FORM, **fields))
        case.history_head, case.history_length = digest, seq
        for name, ob in self.definition.spec.obligations.items():
            if ev.event.name in ob.fulfilled_by and session.scalar(
                select(Obligation).where(Obligation.case_id == case.id, Obligation.name == name, Obligation.status == "open")
            ):
                raise RuntimeError("the benchmark's lifecycle has no open obligation at this step")
        if case.state != from_state:
            for timer in session.scalars(
                select(Timer).where(Timer.case_id == case.id, Timer.status == "pending", Timer.state == from_state)
            ):
                timer.status, timer.next_at, timer.closed_at = "cancelled", None, now
            for row in state_timers(self.rt, self.definition, case.state, case.data, local_date(now)):
                session.add(Timer(case_id=case.id, kind="state", status="pending", level=0, next_step=0, created_at=now, **row))

    def close(self) -> None:
        """Dispose of the engine."""
        if self.db is not None:
            self.db.dispose()


__all__ = ["NaiveLifecycle"]
