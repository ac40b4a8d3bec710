"""What every benchmark shares: the runtime, the 8-step lifecycle, units and cases to run it on.

The lifecycle is ``qms_lifecycle`` from ``approve_plan`` to ``announce``: 8 consecutive events, three
of which change the state (and so cancel one timer and plan the next) while five record data in the
state; two of them also look for an open obligation to fulfil. Every case ends in ``announced`` with
the notice-to-the-Department timer pending.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from ruamel.yaml import YAML
from sqlalchemy import insert, select

from qmsflow.config import CALENDAR_FILE
from qmsflow.engine import Actor, FixedClock, Registry, Role, Runtime, WorkingCalendar, open_case
from qmsflow.engine.calendar import CalendarOverrides
from qmsflow.engine.clock import LOCAL_TZ
from qmsflow.engine.db import Database
from qmsflow.engine.models import Case, Timer, Unit, UnitParent, UnitVersion
from qmsflow.workflows import DIRECTORY as WORKFLOWS

HISTORY_KEY = b"bench-history-key"
WORKFLOW = "qms_lifecycle"
START_DAY = date(2026, 1, 5)
VALID_FROM = date(2025, 7, 1)


@dataclass(frozen=True)
class Step:
    """One event of the lifecycle: the day it is fired on, the data it records, the state it reaches."""

    day: date
    event: str
    data: Mapping[str, Any]
    to_state: str


LIFECYCLE: tuple[Step, ...] = (
    Step(date(2026, 1, 6), "approve_plan", {"plan_number": "12/KH", "plan_approved_on": "2026-01-06"}, "building"),
    Step(date(2026, 1, 20), "establish_committee", {"committee_decision_number": "30/QĐ", "committee_decided_on": "2026-01-20"}, "building"),
    Step(date(2026, 2, 2), "issue_documents", {"documents_decision_number": "31/QĐ", "documents_issued_on": "2026-02-02", "procedure_count": 14}, "building"),
    Step(date(2026, 2, 3), "start_applying", {}, "applying"),
    Step(date(2026, 5, 4), "record_internal_audit", {"internal_audit_on": "2026-05-04", "internal_audit_report": "2/BC", "nonconformities_open": 0}, "applying"),
    Step(date(2026, 5, 11), "record_management_review", {"management_review_on": "2026-05-11", "management_review_minutes": "3/BB"}, "applying"),
    Step(date(2026, 5, 12), "confirm_effective", {"effective_confirmed_on": "2026-05-12"}, "applying"),
    Step(date(2026, 5, 13), "announce", {"announcement_number": "5/QĐ", "announced_on": "2026-05-13"}, "announced"),
)
FINAL_STATE = LIFECYCLE[-1].to_state


def local(day: date, hour: int = 9) -> datetime:
    """Return ``hour``:00 on ``day`` in Vietnam as an aware instant."""
    return datetime.combine(day, time(hour, 0), tzinfo=LOCAL_TZ)


_REGISTRY: Registry | None = None
_OVERRIDES: CalendarOverrides | None = None


def runtime(clock: FixedClock | None = None) -> Runtime:
    """Return a runtime on the shipped definitions and calendar, on a fixed clock at the start day."""
    global _REGISTRY, _OVERRIDES
    if _REGISTRY is None:
        _REGISTRY = Registry.from_directory(WORKFLOWS)
        _OVERRIDES = CalendarOverrides.from_mapping(YAML(typ="safe", pure=True).load(CALENDAR_FILE.read_text("utf-8")))
    return Runtime(
        registry=_REGISTRY,
        calendar=WorkingCalendar(_OVERRIDES),
        clock=clock or FixedClock(local(START_DAY)),
        history_key=HISTORY_KEY,
    )


LEAD = Actor(username="lead", role=Role.LEAD, unit_id=1)


def officer(unit_id: int) -> Actor:
    """Return the ISO officer of a unit: the actor who fires its lifecycle events."""
    return Actor(username=f"officer{unit_id}", role=Role.UNIT_OFFICER, unit_id=unit_id)


def seed_schools(db: Database, count: int) -> list[int]:
    """Insert a provincial People's Committee (id 1) and ``count`` schools under it; return their ids.

    Setup, not timed: bulk inserts, identical in every database so case ids and hashes line up.
    """
    ids = list(range(2, count + 2))
    with db.write() as session:
        session.execute(insert(Unit), [{"id": i, "valid_from": VALID_FROM} for i in [1, *ids]])
        session.execute(
            insert(UnitVersion),
            [{"unit_id": 1, "code": "91", "name": "UBND tỉnh", "kind": "province_pc", "is_lead": True, "valid_from": VALID_FROM}]
            + [
                {"unit_id": i, "code": f"S{i}", "name": f"Trường THPT số {i}", "kind": "high_school", "is_lead": False, "valid_from": VALID_FROM}
                for i in ids
            ],
        )
        session.execute(insert(UnitParent), [{"unit_id": i, "parent_id": 1, "valid_from": VALID_FROM} for i in ids])
    return ids


def open_lifecycles(db: Database, rt: Runtime, unit_ids: Sequence[int]) -> list[int]:
    """Open one lifecycle case per unit through the engine, in one transaction (setup, not timed)."""
    rt.clock.set(local(START_DAY))  # type: ignore[attr-defined]
    with db.write() as session:
        units = {u.id: u for u in session.scalars(select(Unit).where(Unit.id.in_(unit_ids)))}
        return [open_case(session, rt, LEAD, units[i], WORKFLOW).id for i in unit_ids]


# ------------------------------------------------------------------------------------- the checks


def snapshot(db: Database, case_ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
    """Return, per case, what "the same final state" means: state, version, data, history chain, timers.

    The history head is an HMAC chained over every row, so equal heads mean equal history rows.
    """
    out: dict[int, tuple[Any, ...]] = {}
    wanted = set(case_ids)
    with db.read() as session:
        timers: dict[int, list[tuple[Any, ...]]] = {}
        for t in session.execute(
            select(Timer.case_id, Timer.name, Timer.kind, Timer.state, Timer.due_date, Timer.next_at, Timer.next_step).where(
                Timer.status == "pending"
            )
        ):
            if t.case_id in wanted:
                timers.setdefault(t.case_id, []).append(tuple(t[1:]))
        for c in session.execute(
            select(Case.id, Case.state, Case.version, Case.data, Case.history_length, Case.history_head)
        ):
            if c.id in wanted:
                out[c.id] = (
                    c.state,
                    c.version,
                    json.dumps(c.data, sort_keys=True),
                    c.history_length,
                    c.history_head,
                    tuple(sorted(timers.get(c.id, []))),
                )
    return out


def compare(expected: Mapping[int, tuple[Any, ...]], actual: Mapping[int, tuple[Any, ...]], final_state: str) -> str:
    """Return "ok" when every case in ``actual`` matches ``expected`` and is in ``final_state``."""
    fields = ("state", "version", "data", "history rows", "history head", "pending timers")
    if not actual:
        return "no cases"
    for case_id, got in actual.items():
        want = expected.get(case_id)
        if want is None:
            return f"case {case_id} unknown"
        if got[0] != final_state:
            return f"case {case_id} in {got[0]}"
        for name, a, b in zip(fields, want, got, strict=True):
            if a != b:
                return f"case {case_id}: {name} differs"
    return "ok"


__all__ = [
    "FINAL_STATE",
    "HISTORY_KEY",
    "LEAD",
    "LIFECYCLE",
    "Step",
    "compare",
    "local",
    "officer",
    "open_lifecycles",
    "runtime",
    "seed_schools",
    "snapshot",
]
