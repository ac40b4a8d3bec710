"""The sweep at scale: a million cases with nothing due, then 100,000 due reminders.

One database holds 1,000,000 lifecycle cases, each with its plan-approval timer (setup, in bulk).
Two groups of 100,000 have their first reminder due on consecutive working days; every other timer
lies months ahead.

- Nothing due: ``sweep()`` before any reminder is due, against the indexed SELECT of due timers on
  the same (empty) range through the bare driver, and against ``sweep()`` on an empty database.
- Due timers: ``sweep()`` fires group A's reminders (history row, chain head, outbox notification,
  firing record, next step), in its batches of 200; the floor does the same writes for group B a day
  later with bare SQL, batched the same way (one SELECT, then ``executemany`` per table, per batch).
  The two take turns, ten batches at a time. Both groups are then checked to have ended alike.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from qmsflow.engine import FixedClock
from qmsflow.engine.clock import local_date
from qmsflow.engine.db import Database
from qmsflow.engine.history import row_hash, verify_case
from qmsflow.engine.messages import text
from qmsflow.engine.models import Case, HistoryEntry, Notification, Timer, TimerFiring
from qmsflow.engine.sweep import sweep
from qmsflow.engine.timers import Step, plan_steps

from .bulk import CASE_COLUMNS, HISTORY_COLUMNS, TIMER_COLUMNS, Loader, opened_row
from .databases import Servers, connect_sqlite, migrated, psycopg_dsn, scratch
from .peers.writes import naive_utc
from .report import Report, Row, Target
from .world import HISTORY_KEY, VALID_FROM, WORKFLOW, local, runtime

IDLE_TARGET = Target("<=", 10)
FIRE_TARGET = Target(">=", 0.5)  # issue 11: at least half its batched floor
BATCH = 200
PLANS: list[str] = []  # each baseline's query plan, as the database printed it, for the notes
TURN = 10  # batches each side runs before the other takes its turn
START_A = date(2026, 3, 2)
START_IDLE = date(2026, 9, 1)


@dataclass(frozen=True)
class Sizes:
    """How many cases, and how many of them have a reminder due in each group."""

    cases: int
    due: int
    idle_repeats: int

    @classmethod
    def for_run(cls, scale: float, smoke: bool) -> Sizes:
        """Full run: 1,000,000 cases and 100,000 due reminders per group."""
        if smoke:
            return cls(cases=3_000, due=300, idle_repeats=5)
        return cls(cases=max(10_000, int(1_000_000 * scale)), due=max(1_000, int(100_000 * scale)), idle_repeats=200)


@dataclass(frozen=True)
class Group:
    """Cases whose plan-approval timer started on ``start``: their plan, and when its first reminder is due."""

    first: int
    last: int
    start: date
    steps: tuple[Step, ...]
    due: date

    @property
    def fire_at(self) -> datetime:
        """09:00 on the day of the first reminder."""
        return local(local_date(self.steps[0].at))


def _group(first: int, last: int, start: date) -> Group:
    rt = runtime()
    definition = rt.registry.latest(WORKFLOW)
    spec = definition.spec.states["planned"].timers["plan_due"]
    due = rt.calendar.due_date(start, spec.length, spec.unit)
    steps = plan_steps(spec, definition.ladder("planned.plan_due"), start, due, rt.calendar)
    assert steps[0].kind == "reminder"
    return Group(first, last, start, tuple(steps), due)


def load(url: str, sizes: Sizes, a: Group, b: Group, idle: Group) -> None:
    """Insert units, cases, history and timers in bulk (setup, not timed)."""
    loader = Loader(url)
    units = max(1, sizes.due)
    loader.insert_units([(i, f"U{i}", f"Trường số {i}", "high_school", False, VALID_FROM, None) for i in range(1, units + 1)])

    def group_of(case_id: int) -> Group:
        return a if case_id <= a.last else b if case_id <= b.last else idle

    def cases() -> Any:
        for i in range(1, sizes.cases + 1):
            g = group_of(i)
            opened = local(g.start)
            head, length = ("", 0)
            if g is not idle:  # only cases that fire carry their "opened" row; the others are never read
                head, length = opened_row(HISTORY_KEY, i, opened, "lead", "planned", {})[1], 1
            yield (i, (i - 1) % units + 1, WORKFLOW, 1, "planned", 1, {}, None, opened, opened, None, head, length)

    def history() -> Any:
        for i in range(1, b.last + 1):
            g = group_of(i)
            opened = local(g.start)
            fields, digest = opened_row(HISTORY_KEY, i, opened, "lead", "planned", {})
            yield (i, 1, opened, "opened", None, None, "planned", "lead", {}, "", digest)

    def timers() -> Any:
        for i in range(1, sizes.cases + 1):
            g = group_of(i)
            opened = local(g.start)
            yield (
                i, i, "plan_due", "state", "planned", None, g.start, g.due, g.steps[len([s for s in g.steps if s.kind == "reminder"])].at,
                "pending", 0, 0, g.steps[0].at, opened, None,
            )

    loader.insert("cases", CASE_COLUMNS, cases())
    loader.insert("history", HISTORY_COLUMNS, history())
    loader.insert("timers", TIMER_COLUMNS, timers())
    loader.reset_sequences(["units", "unit_versions", "cases", "history", "timers"])
    loader.analyze()


# -------------------------------------------------------------------------------------- the floor


class Floor:
    """Bare SQL doing the sweep's writes for due reminders, a batch per transaction.

    It takes only its own group's timers: while the two take turns, the sweep's group is due too.
    """

    def __init__(self, url: str, backend: str, group: Group, language: str = "vi") -> None:
        self.sqlite = backend == "sqlite"
        self.group = group
        self.explained = False
        rt = runtime()
        definition = rt.registry.latest(WORKFLOW)
        spec = definition.spec.states["planned"].timers["plan_due"]
        self.label = spec.label.get(language)
        self.workflow_label = definition.spec.label.get(language)
        self.state_label = definition.spec.states["planned"].label.get(language)
        self.language = language
        if self.sqlite:
            self.conn: Any = connect_sqlite(url)
            m = "?"
            self.json: Any = _sqlite_json
            self.dt: Any = _sqlite_dt
        else:
            import psycopg
            from psycopg.types.json import Jsonb

            self.conn = psycopg.connect(psycopg_dsn(url))
            m = "%s"
            self.json = Jsonb
            self.dt = naive_utc
        lock = "" if self.sqlite else " FOR UPDATE OF t, c"
        self.sql_due = (
            "SELECT t.id, t.case_id, t.next_step, c.unit_id, c.history_head, c.history_length, u.name "
            "FROM timers t JOIN cases c ON c.id = t.case_id JOIN unit_versions u ON u.unit_id = c.unit_id AND u.valid_to IS NULL "
            # Its own group by the (status, next_at) index alone: its timers are the only ones whose next step
            # lies between its first reminder and now (the sweep's group is due a day earlier and, once fired,
            # waits for a step after now). A case-id range here made SQLite sort the whole group per batch.
            f"WHERE t.status = 'pending' AND t.next_at >= {m} AND t.next_at <= {m} "
            f"ORDER BY t.next_at LIMIT {m}{lock}"
        )
        self.sql_history = (
            "INSERT INTO history (case_id, seq, at, kind, event, from_state, to_state, actor, data, prev_hash, hash) "
            f"VALUES ({', '.join([m] * 11)})"
        )
        self.sql_head = f"UPDATE cases SET history_head = {m}, history_length = {m} WHERE id = {m}"
        self.sql_notification = (
            "INSERT INTO notifications (case_id, timer_id, kind, level, target, target_unit_id, subject, body, created_at, status) "
            f"VALUES ({', '.join([m] * 10)})"
        )
        self.sql_firing = (
            "INSERT INTO timer_firings (timer_id, step, kind, level, outcome, scheduled_at, fired_at, fired_by) "
            f"VALUES ({', '.join([m] * 8)})"
        )
        self.sql_timer = f"UPDATE timers SET next_step = {m}, next_at = {m} WHERE id = {m}"

    def batch(self, now: datetime) -> int:
        """Fire one batch of due reminders; return how many."""
        conn = self.conn
        if self.sqlite:
            conn.execute("BEGIN IMMEDIATE")
        if not self.explained:
            self.explained = True
            plan = explain(conn, "sqlite" if self.sqlite else "postgresql", self.sql_due, (self.dt(self.group.steps[0].at), self.dt(now), BATCH))
            PLANS.append(f"{'sqlite' if self.sqlite else 'postgresql'}, the floor's SELECT of due reminders: {plan}")
        rows = conn.execute(self.sql_due, (self.dt(self.group.steps[0].at), self.dt(now), BATCH)).fetchall()
        steps = self.group.steps
        due_text = self.group.due.strftime("%d/%m/%Y")
        at = self.dt(now)
        history, heads, notifications, firings, timers = [], [], [], [], []
        for timer_id, case_id, index, unit_id, head, length, unit_name in rows:
            step = steps[index]
            data = {"timer": "plan_due", "step": index, "due": self.group.due.isoformat(), "scheduled_at": _instant(step.at)}
            fields = {"at": now, "kind": "reminder", "event": None, "from_state": None, "to_state": None, "actor": "system", "data": data}
            digest = row_hash(HISTORY_KEY, case_id, length + 1, fields, head)
            history.append((case_id, length + 1, at, "reminder", None, None, None, "system", self.json(data), head, digest))
            heads.append((digest, length + 1, case_id))
            subject = text(self.language, "reminder", timer=self.label, unit=unit_name, level=0)[:255]
            body = text(
                self.language, "body", case=case_id, workflow=self.workflow_label, unit=unit_name, state=self.state_label,
                timer=self.label, due=due_text, extra=text(self.language, "reminder_extra", level=0),
            )
            notifications.append((case_id, timer_id, "reminder", 0, "unit", unit_id, subject, body, at, "pending"))
            firings.append((timer_id, index, "reminder", 0, "fired", self.dt(step.at), at, "floor"))
            timers.append((index + 1, self.dt(steps[index + 1].at), timer_id))
        cur = conn.cursor()
        cur.executemany(self.sql_history, history)
        cur.executemany(self.sql_head, heads)
        cur.executemany(self.sql_notification, notifications)
        cur.executemany(self.sql_firing, firings)
        cur.executemany(self.sql_timer, timers)
        if self.sqlite:
            conn.execute("COMMIT")
        else:
            conn.commit()
        return len(rows)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _instant(at: datetime) -> str:
    from qmsflow.engine.history import canonical_instant

    return canonical_instant(at)


def _sqlite_json(value: Any) -> str:
    import json

    return json.dumps(value)


def _sqlite_dt(at: datetime) -> str:
    return naive_utc(at).strftime("%Y-%m-%d %H:%M:%S.%f")


def _bare_select(url: str, backend: str, now: datetime, repeats: int) -> list[float]:
    """Time the sweep's due-timer SELECT on an empty range through the bare driver."""
    sql = "SELECT case_id FROM timers WHERE status = 'pending' AND next_at <= {m} ORDER BY next_at LIMIT {m}"
    if backend == "sqlite":
        conn: Any = connect_sqlite(url)
        params: tuple[Any, ...] = (_sqlite_dt(now), BATCH * 4)
        query = sql.format(m="?")
    else:
        import psycopg

        conn = psycopg.connect(psycopg_dsn(url), autocommit=True)
        params = (naive_utc(now), BATCH * 4)
        query = sql.format(m="%s")
    times = []
    try:
        PLANS.append(f"{backend}, the bare probe of due timers: {explain(conn, backend, query, params)}")
        for _ in range(repeats):
            started = time.perf_counter()
            rows = conn.execute(query, params).fetchall()
            times.append(time.perf_counter() - started)
            assert rows == []
    finally:
        conn.close()
    return times


def explain(conn: Any, backend: str, sql: str, params: tuple[Any, ...]) -> str:
    """Return the plan the database picks for ``sql`` (EXPLAIN QUERY PLAN on SQLite, EXPLAIN on PostgreSQL)."""
    if backend == "sqlite":
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        return "; ".join(str(r[-1]) for r in rows)
    rows = conn.execute("EXPLAIN " + sql, params).fetchall()
    return "; ".join(" ".join(str(r[0]).split()) for r in rows)


def _idle_sweeps(db: Database, now: datetime, repeats: int) -> list[float]:
    rt = runtime(FixedClock(now))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        report = sweep(db, rt, now, batch_size=BATCH)
        times.append(time.perf_counter() - started)
        assert report.count == 0
    return times


# -------------------------------------------------------------------------------------- the check


def check_group(db: Database, group: Group, worker: str, sample: int = 50) -> str:
    """Return "ok" when every case of the group fired its first reminder once and nothing else."""
    ids = (Case.id >= group.first) & (Case.id <= group.last)
    size = group.last - group.first + 1
    with db.read() as session:
        counts = {
            "cases moved to the second history row": session.scalar(select(func.count()).select_from(Case).where(ids, Case.history_length == 2)),
            "timers on the next reminder": session.scalar(
                select(func.count()).select_from(Timer).where(
                    Timer.case_id.between(group.first, group.last), Timer.status == "pending", Timer.next_step == 1,
                    Timer.next_at == group.steps[1].at,
                )
            ),
            "reminder history rows": session.scalar(
                select(func.count()).select_from(HistoryEntry).where(
                    HistoryEntry.case_id.between(group.first, group.last), HistoryEntry.kind == "reminder"
                )
            ),
            "outbox notifications": session.scalar(
                select(func.count()).select_from(Notification).where(
                    Notification.case_id.between(group.first, group.last), Notification.kind == "reminder"
                )
            ),
            "firing records": session.scalar(
                select(func.count()).select_from(TimerFiring).join(Timer, Timer.id == TimerFiring.timer_id).where(
                    Timer.case_id.between(group.first, group.last), TimerFiring.fired_by == worker,
                    TimerFiring.step == 0, TimerFiring.outcome == "fired",
                )
            ),
        }
        for what, count in counts.items():
            if count != size:
                return f"{what}: {count} of {size}"
        step = max(1, size // sample)
        for case_id in range(group.first, group.last + 1, step):
            case = session.get(Case, case_id)
            assert case is not None
            rows = list(session.scalars(select(HistoryEntry).where(HistoryEntry.case_id == case_id).order_by(HistoryEntry.seq)))
            findings = verify_case(HISTORY_KEY, case, rows)
            if findings:
                return str(findings[0])
    return "ok"


def run(report: Report, servers: Servers, backends: list[str], scale: float, smoke: bool) -> None:
    """Measure every backend."""
    sizes = Sizes.for_run(scale, smoke)
    report.sizes["sweep"] = (
        f"{sizes.cases:,} cases with a pending timer; {sizes.due:,} due reminders fired by the sweep and {sizes.due:,} "
        f"by the floor; the nothing-due sweep repeated {sizes.idle_repeats} times (median)"
    )
    for backend in backends:
        _run_backend(report, servers, backend, sizes)


def _run_backend(report: Report, servers: Servers, backend: str, sizes: Sizes) -> None:
    a = _group(1, sizes.due, START_A)
    b = _group(sizes.due + 1, 2 * sizes.due, START_A + timedelta(days=1))
    idle = _group(2 * sizes.due + 1, sizes.cases, START_IDLE)
    assert local_date(b.steps[0].at) > local_date(a.steps[0].at) and b.steps[0].at < a.steps[1].at
    assert a.steps[1].at > b.fire_at  # so the floor's next_at range holds its own group only (Floor.sql_due)
    quiet = local(a.start)
    with scratch(servers, backend, "sweep_empty") as empty_url:
        empty = migrated(empty_url)
        try:
            empty_times = _idle_sweeps(empty, quiet, sizes.idle_repeats)
        finally:
            empty.dispose()
    with scratch(servers, backend, "sweep") as url:
        db = migrated(url)
        floor = Floor(url, backend, b)
        try:
            load(url, sizes, a, b, idle)
            idle_times = _idle_sweeps(db, quiet, sizes.idle_repeats)
            select_times = _bare_select(url, backend, quiet, sizes.idle_repeats)
            rt = runtime(FixedClock(a.fire_at))
            rounds: list[tuple[float, float]] = []  # (sweep's rate, floor's rate) per interleaved round
            fired_ours = fired_theirs = 0
            ours_done = theirs_done = False
            while not (ours_done and theirs_done):
                ours = theirs = 0.0
                n_ours = n_theirs = 0
                if not ours_done:
                    started = time.perf_counter()
                    result = sweep(db, rt, a.fire_at, batch_size=BATCH, max_batches=TURN)
                    ours = time.perf_counter() - started
                    n_ours = result.count
                    ours_done = result.batches < TURN or result.count == 0
                if not theirs_done:
                    started = time.perf_counter()
                    for _ in range(TURN):
                        n = floor.batch(b.fire_at)
                        n_theirs += n
                        if n < BATCH:
                            theirs_done = True
                            break
                    theirs = time.perf_counter() - started
                fired_ours += n_ours
                fired_theirs += n_theirs
                if n_ours and n_theirs:  # a round in which both did work
                    rounds.append((n_ours / ours, n_theirs / theirs))
            check = check_group(db, a, "sweep")
            if check == "ok":
                check = check_group(db, b, "floor")
            if check == "ok" and fired_ours != sizes.due:
                check = f"the sweep fired {fired_ours} of {sizes.due}"
        finally:
            floor.close()
            db.dispose()
    idle_ms = statistics.median(idle_times) * 1000
    report.add(
        Row(
            f"sweep, nothing due, {sizes.cases:,} cases",
            backend,
            "sweep()",
            idle_ms,
            "indexed SELECT, empty range (bare driver)",
            statistics.median(select_times) * 1000,
            "ms",
            IDLE_TARGET,
        )
    )
    report.add(
        Row(
            f"sweep, nothing due, {sizes.cases:,} cases vs none",
            backend,
            "sweep()",
            idle_ms,
            "sweep() on an empty database",
            statistics.median(empty_times) * 1000,
            "ms",
        )
    )
    report.add(
        Row(
            f"due reminders fired/s ({sizes.due:,}){rounds_label(rounds)}",
            backend,
            "sweep()",
            statistics.median(r[0] for r in rounds) if rounds else 0.0,
            "bare SQL, same writes, batched",
            statistics.median(r[1] for r in rounds) if rounds else 1.0,
            "/s",
            FIRE_TARGET,
            check,
        )
    )
    report.notes.extend(PLANS)
    PLANS.clear()


def rounds_label(rounds: list[tuple[float, float]]) -> str:
    """Return ", ratio median M over N rounds (L to H)": each round's ratio, sweep over floor."""
    if not rounds:
        return ", no round"
    ratios = [ours / theirs for ours, theirs in rounds]
    return f", ratio median {statistics.median(ratios):.3g}x over {len(ratios)} rounds ({min(ratios):.3g} to {max(ratios):.3g})"


NOTES = [
    "Sweep: a reminder firing writes one history row (and moves the HMAC chain head on the case), one outbox "
    "notification with its composed Vietnamese text, one timer_firings row and the timer's next step. The floor "
    "writes exactly these rows for the other group, batched per table with executemany, 200 timers per transaction "
    "like the sweep, with no per-case savepoint and no ORM.",
    "Sweep, nothing due: the 'small factor' target is set at 10x the bare driver's SELECT on the empty index range. "
    "The profile showed the sweep opening a write transaction (BEGIN IMMEDIATE on SQLite, taking the write lock) "
    "and building its claim query just to find nothing: 0.5 ms on SQLite, 140x the bare SELECT. Engine fix: a "
    "read-only look for anything due before any write transaction, now run without BEGIN/ROLLBACK around it "
    "(Database.glance). On PostgreSQL that is within 1.5 to 3.5x of the bare query. On SQLite the bare SELECT is an "
    "in-process call of a few microseconds; what remains (~50 to 200 us depending on the machine's load) is "
    "SQLAlchemy's pool checkout and statement execution around it, which does not grow with the table (the 'vs none' "
    "row). The 10x target stays missed on SQLite: meeting it would need the probe on the bare driver.",
    "Sweep, due reminders, what the profile showed: ~1.2 ms per reminder, of which a SELECT of the unit per case "
    "(for the message) 25%, the per-case flush of notification, firing and timer 26%, the per-case SELECT of due "
    "timers 15%, the history row 11%, the per-case savepoint 7%. First engine fix: one query per batch for the due "
    "timers and one for the units (~0.8 ms). Second, in this run: a batched firing path. The sweep works out every "
    "step of a batch first (history rows with their HMAC chain, notifications, firings, the timers' next steps) and "
    "writes each table with one executemany; the loaded rows are kept in step without a flush. Only a case whose "
    "due step runs a transition (on_due) gets its own savepoint, and if the batched write fails the batch is rolled "
    "back to its savepoint and redone case by case, so only the bad case waits (tests/engine/test_sweep.py). Each "
    "timer's plan is worked out once per sweep for the same dates. The cProfile after: of the sweep's time per "
    "reminder, composing the message and hashing the history row are about a third, the five executemany writes "
    "about a quarter, claiming and loading the batch about a fifth.",
]

__all__ = ["NOTES", "run"]
