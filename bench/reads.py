"""Dashboard reads at national scale: 70,000 units, their cases and timers, 5,000,000 history rows.

The queries a dashboard needs (cases by stage; overdue cases and open escalations by supervising
authority; the next 30 days of deadlines; the latest activity) run through SQLAlchemy on the
national database and on an empty one; each is the median of several runs after one warm-up. Then
each index the dashboard relies on is dropped, the query timed again, and the index put back, so
the table says which index makes which difference.

The nation (setup, in bulk): 34 provinces, each a People's Committee with 20 departments, 100
communes and the rest schools, so 70,000 units; one lifecycle case per unit, spread over the states
as a province is mid-way, and a corrective action for one unit in ten; pending timers with due dates
from two months ago to a year ahead, some escalated; finished timers; and the history rows spread
over the cases. History rows carry placeholder hashes: nothing here verifies them.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session

from qmsflow.engine.calendar import deadline_instant
from qmsflow.engine.clock import local_date
from qmsflow.engine.db import Database
from qmsflow.engine.models import Case, HistoryEntry, Timer, Unit, UnitParent
from qmsflow.engine.registry import Registry

from .bulk import CASE_COLUMNS, PARENT_COLUMNS, TIMER_COLUMNS, Loader
from .databases import Servers, migrated, scratch
from .peers.writes import naive_utc
from .report import Report, Row
from .world import VALID_FROM, local, runtime

NOW = local(date(2026, 11, 27), 9)
PROVINCES = 34
DEPARTMENTS = 20
COMMUNES = 100

# Where a province's lifecycle cases stand (state, share); end states are closed cases.
LIFECYCLE_MIX = (
    ("planned", 0.08), ("building", 0.22), ("applying", 0.25), ("announced", 0.05),
    ("maintaining", 0.33), ("reannouncing", 0.04), ("superseded", 0.02), ("withdrawn", 0.01),
)
STATE_TIMER = {
    "planned": "plan_due", "building": "build_due", "applying": "apply_due", "announced": "notice_due",
    "reannouncing": "reannounce_due",
}
CORRECTIVE_MIX = (("open", 0.5), ("reported", 0.2), ("reopened", 0.1), ("accepted", 0.2))
CORRECTIVE_TIMER = {"open": "report_due", "reported": "review_due", "reopened": "resubmit_due"}


@dataclass(frozen=True)
class Sizes:
    """Provinces, units and history rows of the nation, and how often each query is timed."""

    provinces: int
    units: int
    history: int
    repeats: int

    @classmethod
    def for_run(cls, scale: float, smoke: bool) -> Sizes:
        """Full run: 34 provinces, 70,000 units and 5,000,000 history rows."""
        if smoke:
            return cls(provinces=2, units=2 * 130, history=5_000, repeats=2)
        units = max(PROVINCES * 130, int(70_000 * scale))
        return cls(provinces=PROVINCES, units=units, history=max(100_000, int(5_000_000 * scale)), repeats=15)


# ---------------------------------------------------------------------------------------- queries


def _valid_on(day: date) -> Any:
    return and_(UnitParent.valid_from <= day, or_(UnitParent.valid_to.is_(None), UnitParent.valid_to > day))


def cases_by_stage(session: Session, registry: Registry, now: datetime) -> dict[str, int]:
    """Open cases per stage of their definition (build, apply, announce, maintain, improve, remediate)."""
    stages: dict[str, int] = {}
    for workflow, version, state, count in session.execute(
        select(Case.workflow, Case.workflow_version, Case.state, func.count())
        .where(Case.closed_at.is_(None))
        .group_by(Case.workflow, Case.workflow_version, Case.state)
    ):
        stage = registry.get(workflow, version).spec.states[state].stage or state
        stages[stage] = stages.get(stage, 0) + count
    return stages


def _per_authority(session: Session, timers: Any, today: date) -> list[tuple[int, int]]:
    # The timers are picked first (a MATERIALIZED CTE): left to itself, SQLite walks every unit
    # through the parent index to avoid sorting the groups, and visits 70,000 units for a few thousand rows.
    picked = timers.cte("picked").prefix_with("MATERIALIZED")
    return list(
        session.execute(
            select(UnitParent.parent_id, func.count())
            .select_from(picked)
            .join(Case, Case.id == picked.c.case_id)
            .join(UnitParent, and_(UnitParent.unit_id == Case.unit_id, _valid_on(today)))
            .group_by(UnitParent.parent_id)
        ).tuples()
    )


def overdue_by_authority(session: Session, registry: Registry, now: datetime) -> list[tuple[int, int]]:
    """Cases with a passed deadline still pending, counted per supervising authority."""
    today = local_date(now)
    overdue = select(Timer.case_id).where(Timer.status == "pending", Timer.due_date < today).distinct()
    return _per_authority(session, overdue, today)


def escalations_by_authority(session: Session, registry: Registry, now: datetime) -> list[tuple[int, int]]:
    """Open escalations (pending timers past their first ladder level) per supervising authority."""
    today = local_date(now)
    return _per_authority(session, select(Timer.case_id).where(Timer.status == "pending", Timer.level > 0), today)


def next_30_days(session: Session, registry: Registry, now: datetime) -> list[tuple[Any, ...]]:
    """The first page (200) of deadlines in the next 30 days, soonest first, with their unit."""
    today = local_date(now)
    return list(
        session.execute(
            select(Timer.id, Timer.name, Timer.due_date, Case.id, Unit.code, Unit.name)
            .join(Case, Case.id == Timer.case_id)
            .join(Unit, Unit.id == Case.unit_id)
            .where(Timer.status == "pending", Timer.due_date >= today, Timer.due_date <= today + timedelta(days=30))
            .order_by(Timer.due_date, Timer.id)
            .limit(200)
        ).tuples()
    )


def latest_activity(session: Session, registry: Registry, now: datetime) -> list[tuple[Any, ...]]:
    """The 50 latest history rows, with their case's unit."""
    return list(
        session.execute(
            select(HistoryEntry.at, HistoryEntry.kind, HistoryEntry.event, Case.id, Unit.code)
            .join(Case, Case.id == HistoryEntry.case_id)
            .join(Unit, Unit.id == Case.unit_id)
            .order_by(HistoryEntry.at.desc())
            .limit(50)
        ).tuples()
    )


Query = Callable[[Session, Registry, datetime], Any]

# Each query, and the indexes it leans on (dropped one at a time to show what each is worth).
QUERIES: tuple[tuple[str, Query, tuple[str, ...]], ...] = (
    ("cases by stage", cases_by_stage, ("ix_cases_open_stage",)),
    ("overdue cases by supervising authority", overdue_by_authority, ("ix_timers_status_due_date", "ix_unit_parents_unit_id")),
    ("open escalations by supervising authority", escalations_by_authority, ("ix_timers_status_level", "ix_unit_parents_unit_id")),
    ("next 30 days of deadlines", next_30_days, ("ix_timers_status_due_date",)),
    ("latest activity", latest_activity, ("ix_history_at",)),
)


# ------------------------------------------------------------------------------------- the nation


@dataclass
class Counts:
    """What was loaded."""

    units: int = 0
    cases: int = 0
    timers: int = 0
    history: int = 0


def load_nation(url: str, sizes: Sizes, registry: Registry) -> Counts:
    """Insert the nation in bulk (setup, not timed); return what was loaded."""
    rng = random.Random(2026)
    loader = Loader(url)
    counts = Counts()
    per_province = sizes.units // sizes.provinces
    if per_province <= 1 + DEPARTMENTS + COMMUNES:
        raise ValueError(f"{sizes.units} units are too few for {sizes.provinces} provinces")
    units: list[tuple[Any, ...]] = []
    parents: list[tuple[Any, ...]] = []
    leaves: list[int] = []
    next_id = 1
    for p in range(sizes.provinces):
        pc = next_id
        units.append((pc, f"P{p}", f"UBND tỉnh {p}", "province_pc", False, VALID_FROM, None))
        next_id += 1
        departments = list(range(next_id, next_id + DEPARTMENTS))
        for d in departments:
            units.append((d, f"P{p}D{d}", f"Sở {d}", "department", p == 0 and d == departments[0], VALID_FROM, None))
            parents.append((d, pc, VALID_FROM, None))
        next_id += DEPARTMENTS
        communes = list(range(next_id, next_id + COMMUNES))
        for c in communes:
            units.append((c, f"P{p}C{c}", f"UBND xã {c}", "commune_pc", False, VALID_FROM, None))
            parents.append((c, pc, VALID_FROM, None))
        next_id += COMMUNES
        education = departments[1]
        for s in range(next_id, pc + per_province):
            high = rng.random() < 0.15
            units.append((s, f"P{p}S{s}", f"Trường {s}", "high_school" if high else "lower_secondary_school", False, VALID_FROM, None))
            parents.append((s, education if high else rng.choice(communes), VALID_FROM, None))
        next_id = pc + per_province
        leaves.extend(departments + communes + list(range(communes[-1] + 1, next_id)))
    counts.units = loader.insert_units(units)
    loader.insert("unit_parents", PARENT_COLUMNS, parents)

    today = local_date(NOW)
    cases: list[tuple[Any, ...]] = []
    timers: list[tuple[Any, ...]] = []
    case_states: list[str] = []

    def pick(mix: tuple[tuple[str, float], ...]) -> str:
        r, acc = rng.random(), 0.0
        for state, share in mix:
            acc += share
            if r < acc:
                return state
        return mix[-1][0]

    def pending(case_id: int, name: str, kind: str, state: str | None) -> None:
        due = today + timedelta(days=rng.randint(-60, 365))
        level = 0
        if due < today:
            level = min(4, (today - due).days // 10)
        start = due - timedelta(days=rng.randint(10, 180))
        timers.append(
            (len(timers) + 1, case_id, name, kind, state, None, start, due, deadline_instant(due), "pending", level, 0,
             deadline_instant(due), local(start), None)
        )

    def finished(case_id: int, name: str, state: str) -> None:
        due = today - timedelta(days=rng.randint(30, 500))
        timers.append(
            (len(timers) + 1, case_id, name, "state", state, None, due - timedelta(days=60), due, deadline_instant(due),
             rng.choice(("cancelled", "done")), 0, 1, None, local(due - timedelta(days=60)), local(due))
        )

    case_id = 0
    for unit in leaves:
        case_id += 1
        state = pick(LIFECYCLE_MIX)
        closed = state in ("superseded", "withdrawn")
        opened = local(VALID_FROM + timedelta(days=rng.randint(0, 120)))
        cases.append((case_id, unit, "qms_lifecycle", 1, state, 5, {"plan_number": f"{case_id}/KH"}, None, opened, opened,
                      NOW if closed else None, "0" * 64, 0))
        case_states.append(state)
        if state in STATE_TIMER:
            pending(case_id, STATE_TIMER[state], "state", state)
        elif state == "maintaining":
            pending(case_id, "yearly_internal_audit", "obligation", None)
            pending(case_id, "yearly_management_review", "obligation", None)
        for _ in range(3):
            finished(case_id, "build_due", "building")
        if rng.random() < 0.1:
            case_id += 1
            ca_state = pick(CORRECTIVE_MIX)
            cases.append((case_id, unit, "corrective_action", 1, ca_state, 3, {"minutes_number": f"{case_id}/BB"}, None,
                          opened, opened, NOW if ca_state == "accepted" else None, "0" * 64, 0))
            case_states.append(ca_state)
            if ca_state in CORRECTIVE_TIMER:
                pending(case_id, CORRECTIVE_TIMER[ca_state], "state", ca_state)
    counts.cases = loader.insert("cases", CASE_COLUMNS, cases)
    counts.timers = loader.insert("timers", TIMER_COLUMNS, timers)

    counts.history = _load_history(loader, len(cases), sizes.history)
    loader.reset_sequences(["units", "unit_versions", "unit_parents", "cases", "timers", "history"])
    loader.analyze()
    return counts


def _load_history(loader: Loader, cases: int, rows: int) -> int:
    """Generate the history rows inside the database (INSERT ... SELECT): Python would take minutes."""
    per_case, extra = divmod(rows, cases)
    span = int((NOW - local(VALID_FROM)).total_seconds())
    start = naive_utc(local(VALID_FROM)).strftime("%Y-%m-%d %H:%M:%S")
    kinds = "CASE s.n % 4 WHEN 0 THEN 'transition' WHEN 1 THEN 'reminder' WHEN 2 THEN 'transition' ELSE 'escalated' END"
    events = "CASE s.n % 4 WHEN 0 THEN 'establish_committee' WHEN 2 THEN 'record_internal_audit' END"
    states = "CASE s.n % 4 WHEN 0 THEN 'building' WHEN 2 THEN 'applying' END"
    data = (
        "CASE s.n % 4 WHEN 0 THEN '{\"committee_decision_number\": \"30/Q\\u0110\"}' "
        "WHEN 1 THEN '{\"timer\": \"build_due\", \"step\": 0, \"due\": \"2026-07-06\"}' "
        "WHEN 2 THEN '{\"internal_audit_on\": \"2026-05-04\"}' "
        "ELSE '{\"timer\": \"apply_due\", \"level\": 1, \"target\": \"unit_head\"}' END"
    )
    wanted = f"s.n <= {per_case} + CASE WHEN c.id <= {extra} THEN 1 ELSE 0 END"
    columns = "case_id, seq, at, kind, event, from_state, to_state, actor, data, prev_hash, hash"
    if loader.sqlite:
        at = f"strftime('%Y-%m-%d %H:%M:%S', '{start}', '+' || (abs(random()) % {span}) || ' seconds') || '.000000'"
        loader.execute(
            f"INSERT INTO history ({columns}) "
            f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {per_case + 1}) "
            f"SELECT c.id, s.n, {at}, {kinds}, {events}, {states}, {states}, 'officer', {data}, "
            f"'{'0' * 64}', '{'1' * 64}' FROM cases c CROSS JOIN s WHERE {wanted} ORDER BY c.id, s.n"
        )
    else:
        at = f"TIMESTAMP '{start}' + floor(random() * {span}) * INTERVAL '1 second'"
        loader.execute(
            f"INSERT INTO history ({columns}) "
            f"SELECT c.id, s.n, {at}, {kinds}, {events}, {states}, {states}, 'officer', ({data})::jsonb, "
            f"'{'0' * 64}', '{'1' * 64}' FROM cases c CROSS JOIN generate_series(1, {per_case + 1}) AS s(n) WHERE {wanted} "
            "ORDER BY c.id, s.n"
        )
    return rows


# ------------------------------------------------------------------------------------------ timing


def time_query(db: Database, registry: Registry, query: Query, repeats: int) -> tuple[float, Any]:
    """Return the median milliseconds of ``query`` after one warm-up run, and its result."""
    with db.read() as session:
        result = query(session, registry, NOW)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            query(session, registry, NOW)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, result


def index_sql(db: Database, name: str) -> tuple[str, str]:
    """Return the CREATE INDEX statement of an existing index and its table, to put it back later."""
    with db.engine.connect() as conn:
        if db.is_sqlite:
            row = conn.execute(text("SELECT sql, tbl_name FROM sqlite_master WHERE type = 'index' AND name = :n"), {"n": name}).first()
        else:
            row = conn.execute(text("SELECT indexdef, tablename FROM pg_indexes WHERE indexname = :n"), {"n": name}).first()
    if row is None:
        raise LookupError(f"index {name} not found")
    return str(row[0]), str(row[1])


def without_index(db: Database, name: str, registry: Registry, query: Query, repeats: int) -> float:
    """Time ``query`` with index ``name`` dropped, then recreate it."""
    create, table = index_sql(db, name)
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP INDEX {name}"))
    try:
        ms, _ = time_query(db, registry, query, repeats)
    finally:
        with db.engine.begin() as conn:
            conn.execute(text(create))
            conn.execute(text(f"ANALYZE {table}"))
    return ms


def run(report: Report, servers: Servers, backends: list[str], scale: float, smoke: bool) -> None:
    """Measure every backend."""
    sizes = Sizes.for_run(scale, smoke)
    registry = runtime().registry
    for backend in backends:
        with scratch(servers, backend, "reads_empty") as empty_url, scratch(servers, backend, "reads") as url:
            empty, db = migrated(empty_url), migrated(url)
            try:
                counts = load_nation(url, sizes, registry)
                report.sizes[f"reads ({backend})"] = (
                    f"{counts.units:,} units, {counts.cases:,} cases, {counts.timers:,} timers, {counts.history:,} history rows; "
                    f"each query timed {sizes.repeats} times (median)"
                )
                for name, query, indexes in QUERIES:
                    base, _ = time_query(empty, registry, query, sizes.repeats)
                    national, result = time_query(db, registry, query, sizes.repeats)
                    check = "ok" if result else "empty result"
                    report.add(Row(f"dashboard: {name}", backend, "national", national, "empty database", base, "ms", None, check))
                    for index in indexes:
                        slower = without_index(db, index, registry, query, sizes.repeats)
                        report.add(Row(f"  ...without {index}", backend, "national", slower, "with it", national, "ms", None, check))
            finally:
                empty.dispose()
                db.dispose()


NOTES = [
    "Reads: no target; the rows say what national scale costs over an empty database, and each "
    "'...without' row what one index is worth (the query timed with that index dropped, over the same query with it).",
    "Reads, which indexes made the difference (migration 0002 adds the first three): ix_timers_status_due_date for the "
    "next 30 days of deadlines (without it both backends walk every pending timer: 15 to 20x on PostgreSQL, 35 to 45x "
    "on SQLite over runs) and a little for overdue cases on PostgreSQL; ix_timers_status_level for open escalations (1.4 to 1.6x on "
    "PostgreSQL, ~4x on SQLite); ix_cases_open_stage, a partial index on open cases that covers the count, for cases "
    "by stage on SQLite (8 to 10x; PostgreSQL hash-aggregates a sequential scan either way); the existing ix_history_at "
    "for the latest activity (without it every history row is sorted: 800 to 1,000x on PostgreSQL, 1,800 to 2,400x on SQLite); "
    "ix_unit_parents_unit_id matters little once the timers are picked first. The per-authority counts pick their "
    "timers in a MATERIALIZED CTE: otherwise SQLite walked all 70,000 units through the parent index to avoid a sort "
    "(escalations 43 ms -> 19 ms at 35,000 units). Those counts still join a few thousand timers to their cases and "
    "units, which is why they stay the slowest dashboard queries (40 to 100 ms, depending on the machine's speed that day).",
]

__all__ = ["NOTES", "QUERIES", "run"]
