"""Work that does not grow with the batch: an escalation batch, routing and a replan batch cost the same statements at 20 and 200 cases.

Regression (review reproductions e_statement_counts and k_escalation_rate): escalations cost two to
three statements per case (the parent and the lead unit looked up per case, the target unit read
again), routing 3.7 per notification and replanning 3 per timer. Counted with a SQLAlchemy event
listener: a count, not a timing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

from sqlalchemy import event, select

from qmsflow.engine import CalendarOverrides, Database, Runtime, WorkingCalendar, open_case
from qmsflow.engine.models import Timer
from qmsflow.engine.notifications import MailSettings, route
from qmsflow.engine.permissions import SYSTEM
from qmsflow.engine.replanning import replan_calendar
from qmsflow.engine.sweep import sweep
from qmsflow.engine.timers import Step, plan_steps, timer_key
from tests.conftest import Province, allow_another_open_case, local

UNITS = ("THPT-TNH", "THCS-MT", "SNV")  # each with a supervising unit, so every level has a body
BATCH = 1000  # everything in one batch: the count is of one batch


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


def count(db: Database, work: Callable[[], object]) -> int:
    with counting(db) as statements:
        work()
    return len(statements)


def on_days_off(rt: Runtime, days_off: list[str]) -> Runtime:
    raw: dict[int, dict[str, list[str]]] = {2025: {"working_days": ["2025-04-26"]}, 2026: {"working_days": ["2026-08-22"]}}
    for day in days_off:
        raw.setdefault(int(day[:4]), {}).setdefault("days_off", []).append(day)
    return Runtime(registry=rt.registry, calendar=WorkingCalendar(CalendarOverrides.from_mapping(raw)), clock=rt.clock, history_key=rt.history_key)


def plan_of(db: Database, rt: Runtime, case_ids: list[int]) -> list[Step]:
    with db.read() as session:
        timer = session.scalar(select(Timer).where(Timer.case_id == case_ids[0], Timer.status == "pending"))
        assert timer is not None
        definition = rt.registry.get("qms_lifecycle", 1)
        key = timer_key(timer)
        return plan_steps(definition.timer_spec(key), definition.ladder(key), timer.start_date, timer.due_date, rt.calendar)


def measure(db: Database, rt: Runtime, province: Province, n: int, opened_on: date, day_off: list[str]) -> tuple[Runtime, dict[str, int]]:
    """Open ``n`` lifecycles on ``opened_on``, then count a replan, two escalation sweeps and routing."""
    rt.clock.set(local(opened_on, 8))
    with db.write() as session:
        ids = []
        for i in range(n):
            unit = province.units[UNITS[i % len(UNITS)]]
            allow_another_open_case(session, unit)
            ids.append(open_case(session, rt, province.actors["lead"], unit, "qms_lifecycle").id)
    counts: dict[str, int] = {}
    moved = on_days_off(rt, day_off)
    report: list[int] = []
    counts["replan"] = count(db, lambda: report.append(len(replan_calendar(db, moved, actor=SYSTEM, batch_size=BATCH).moved)))
    assert report == [n]  # every timer moved
    rt = moved
    steps = plan_of(db, rt, ids)
    levels = {s.level: s.at for s in steps if s.kind == "escalation"}
    hour = timedelta(hours=1)
    assert sweep(db, rt, levels[1] + hour, batch_size=BATCH).count == 2 * n  # the due step and level 1
    supervisor = sweep_counted(db, rt, levels[2] + hour, n, counts, "supervisor escalations")
    lead = sweep_counted(db, rt, levels[3] + hour, n, counts, "lead escalations")
    assert {f.kind for f in supervisor + lead} == {"escalation"}
    routed: list[int] = []
    counts["route"] = count(db, lambda: routed.append(route(db, levels[3] + 2 * hour, MailSettings(enabled=True), batch_size=BATCH)))
    assert routed[0] >= 2 * n
    sweep(db, rt, levels[4] + hour, batch_size=BATCH)  # the last level: these timers are done
    return rt, counts


def sweep_counted(db: Database, rt: Runtime, at: Any, n: int, counts: dict[str, int], label: str) -> list[Any]:
    fired: list[Any] = []
    counts[label] = count(db, lambda: fired.extend(sweep(db, rt, at, batch_size=BATCH).fired))
    assert len([f for f in fired if f.outcome == "fired"]) == n
    return fired


def test_escalations_routing_and_replans_cost_the_same_statements_at_20_and_200_cases(
    db: Database, rt: Runtime, province: Province
) -> None:
    rt, small = measure(db, rt, province, 20, date(2026, 1, 5), ["2026-01-23"])
    _, big = measure(db, rt, province, 200, date(2027, 1, 5), ["2026-01-23", "2027-01-22"])
    for work in small:
        assert abs(big[work] - small[work]) <= 2, f"{work}: {small[work]} statements at 20 cases, {big[work]} at 200"
