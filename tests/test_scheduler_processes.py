"""Real ``qmsflow scheduler`` processes on one PostgreSQL database: every due step fires exactly once.

Several schedulers share the sweep by claiming cases ``FOR UPDATE SKIP LOCKED``: none waits for a
case another transaction holds; a scheduler killed with SIGKILL in the middle of a batch loses only
that batch, which the next scheduler redoes. These tests start the command line an operator runs, as
separate processes, and judge only by what the database holds afterwards. PostgreSQL only: on
SQLite schedulers take turns on the write lock.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from qmsflow.engine import Database, FixedClock, Runtime, open_case
from qmsflow.engine.history import verify_all
from qmsflow.engine.models import Case, HistoryEntry, Notification, Timer, TimerFiring
from qmsflow.engine.timers import plan_steps, timer_key
from tests.conftest import HISTORY_KEY, Province, allow_another_open_case, local

# Every test here runs on PostgreSQL only; the conftest's `db` fixture skips it (and records the
# skipped suite, or fails under QMSFLOW_REQUIRE_ALL_SUITES=1) when no server is available.
pytestmark = pytest.mark.parametrize("backend", ["postgresql"])

QMSFLOW = Path(sys.executable).with_name("qmsflow")
BATCH_SIZE = 50
# Cases are opened on these days, so their plans differ. At NOW every timer has its two reminders
# (skipped: the deadline has passed), its due step and its first escalation due; the timers opened
# on 29 December also their second.
OPENING_DAYS = [date(2025, 12, 29), date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)]
UNITS = ["THPT-TNH", "THCS-MT", "SNV", "SGDDT", "SKHCN"]
NOW = local(date(2026, 2, 26), 9)
# A guard against a hung process, never a performance expectation.
HANG_GUARD_SECONDS = 300
STEP_HISTORY_KINDS = ("reminder", "reminder_skipped", "deadline_passed", "escalated", "escalation_skipped")


def open_cases(db: Database, rt: Runtime, clock: FixedClock, province: Province, count: int) -> None:
    """Open ``count`` QMS lifecycle cases, a share on each opening day, one transaction per day."""
    per_day = -(-count // len(OPENING_DAYS))
    opened = 0
    for day in OPENING_DAYS:
        clock.set(local(day, 8))
        with db.write() as session:
            for _ in range(min(per_day, count - opened)):
                unit = province.units[UNITS[opened % len(UNITS)]]
                allow_another_open_case(session, unit)
                open_case(session, rt, province.actors["lead"], unit, "qms_lifecycle")
                opened += 1


def due_steps(db: Database, rt: Runtime, now: datetime) -> set[tuple[int, int]]:
    """Every (timer, step) whose planned instant is at or before ``now``, from the timers' own plans."""
    expected: set[tuple[int, int]] = set()
    with db.read() as session:
        for timer, case in session.execute(select(Timer, Case).join(Case, Case.id == Timer.case_id)).tuples():
            definition = rt.registry.get(case.workflow, case.workflow_version)
            key = timer_key(timer)
            steps = plan_steps(definition.timer_spec(key), definition.ladder(key), timer.start_date, timer.due_date, rt.calendar)
            expected.update((timer.id, s.index) for s in steps if s.at <= now)
    return expected


def committed_steps(db: Database) -> int:
    """How many firings are committed."""
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(TimerFiring)) or 0)


def firings(db: Database) -> list[tuple[int, int, str]]:
    """Every recorded firing as (timer, step, fired_by)."""
    with db.read() as session:
        return [(t, s, by) for t, s, by in session.execute(select(TimerFiring.timer_id, TimerFiring.step, TimerFiring.fired_by))]


def qmsflow_env(db: Database, instance: Path, **extra: str) -> dict[str, str]:
    """The environment a ``qmsflow`` process on the test database runs with."""
    return {
        **os.environ,
        "QMSFLOW_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
        "QMSFLOW_HISTORY_KEY": HISTORY_KEY.decode(),
        "QMSFLOW_INSTANCE_PATH": str(instance),
        "QMSFLOW_SMTP_ENABLED": "false",
        "QMSFLOW_SCHEDULER_BATCH_SIZE": str(BATCH_SIZE),
        # this checkout's code, also where the installed qmsflow is another checkout's
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]),
        **extra,
    }


class SchedulerProcess:
    """One ``qmsflow scheduler --exit-when-idle`` process on the test database, logging to a file."""

    def __init__(self, db: Database, instance: Path, log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                [str(QMSFLOW), "scheduler", "--exit-when-idle", "--interval", "1", "--now", NOW.isoformat()],
                env=qmsflow_env(db, instance), stdout=out, stderr=subprocess.STDOUT,
            )

    @property
    def worker(self) -> str:
        """The name this process signs its firings with."""
        return f"{socket.gethostname()}:{self.popen.pid}"

    def wait_until_idle_exit(self) -> None:
        """Wait for the scheduler to find nothing due and stop by itself, cleanly."""
        code = self.popen.wait(timeout=HANG_GUARD_SECONDS)
        assert code == 0, self.log.read_text(errors="replace")


@pytest.fixture
def start_scheduler(db: Database, tmp_path: Path) -> Iterator[Callable[[], SchedulerProcess]]:
    """Start scheduler processes on the test database; any still running at the end are killed."""
    started: list[SchedulerProcess] = []

    def start() -> SchedulerProcess:
        process = SchedulerProcess(db, tmp_path / "instance", tmp_path / f"scheduler-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        if process.popen.poll() is None:
            process.popen.kill()
            process.popen.wait()


def assert_every_due_step_fired_exactly_once(db: Database, rt: Runtime) -> Counter[str]:
    """The database shows each due step once, nothing due left behind, one history row per step and
    a chain that verifies; return how many steps each worker fired."""
    expected = due_steps(db, rt, NOW)
    rows = firings(db)
    steps = Counter((timer_id, step) for timer_id, step, _ in rows)
    assert [key for key, n in steps.items() if n > 1] == []
    assert set(steps) == expected
    assert len(rows) == len(expected)
    with db.read() as session:
        left = session.scalar(
            select(func.count()).select_from(Timer).where(Timer.status == "pending", Timer.next_at <= NOW)
        )
        assert left == 0
        # no side effect of a step was repeated either: one history row per firing, one outbox row
        # per reminder or escalation that was not skipped
        step_rows = session.scalar(
            select(func.count()).select_from(HistoryEntry).where(HistoryEntry.kind.in_(STEP_HISTORY_KINDS))
        )
        assert step_rows == len(rows)
        notified = session.scalar(
            select(func.count()).select_from(TimerFiring)
            .where(TimerFiring.outcome == "fired", TimerFiring.kind.in_(("reminder", "escalation")))
        )
        assert session.scalar(select(func.count()).select_from(Notification)) == notified
        cases, _, findings = verify_all(session, HISTORY_KEY)
        assert findings == []
        assert cases == session.scalar(select(func.count()).select_from(Case))
    return Counter(by for _, _, by in rows)


def test_three_schedulers_share_five_thousand_due_timers_and_fire_each_step_once(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, start_scheduler: Callable[[], SchedulerProcess]
) -> None:
    open_cases(db, rt, clock, province, 5000)
    expected = due_steps(db, rt, NOW)
    assert len(expected) >= 4 * 5000  # several steps of every timer are due

    schedulers = [start_scheduler() for _ in range(3)]
    for scheduler in schedulers:
        scheduler.wait_until_idle_exit()

    shares = assert_every_due_step_fired_exactly_once(db, rt)
    # SKIP LOCKED lets each scheduler take work the others have not claimed, instead of queuing behind them
    assert set(shares) == {s.worker for s in schedulers}
    assert all(n > 0 for n in shares.values())


def scheduler_holding_claimed_cases(db: Database) -> bool:
    """True when a scheduler's backend is in a transaction holding row locks on ``cases`` (its claim)."""
    with db.engine.connect() as conn:
        return bool(conn.scalar(text(
            """
            SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
            WHERE a.application_name = 'qmsflow-scheduler' AND a.datname = current_database()
              AND a.xact_start IS NOT NULL AND l.granted AND l.mode = 'RowShareLock'
              AND l.relation = 'cases'::regclass
            """
        )))


def scheduler_backends(db: Database) -> int:
    """How many scheduler connections the server still has on this database."""
    with db.engine.connect() as conn:
        return int(conn.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'qmsflow-scheduler' AND datname = current_database()"
        )) or 0)


def poll(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition()`` holds; the deadline only stops a hung test, it is not what is tested."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting until {what}"
        time.sleep(0.005)


def test_a_scheduler_killed_mid_batch_loses_only_that_batch_and_the_next_one_finishes_exactly_once(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, start_scheduler: Callable[[], SchedulerProcess]
) -> None:
    open_cases(db, rt, clock, province, 1000)
    expected = due_steps(db, rt, NOW)

    first = start_scheduler()
    try:
        # at least one batch committed, and the scheduler is inside the next one holding its claim
        poll(lambda: committed_steps(db) > 0 and scheduler_holding_claimed_cases(db), "the scheduler is mid-sweep")
    finally:
        os.kill(first.popen.pid, signal.SIGKILL)  # no handler runs, nothing is flushed or committed
        first.popen.wait()
    assert first.popen.returncode == -signal.SIGKILL
    # the server notices the dead client and rolls its transaction back, releasing the claimed rows
    poll(lambda: scheduler_backends(db) == 0, "the killed scheduler's connections are gone")

    committed = firings(db)
    assert 0 < len(committed) < len(expected)
    with db.read() as session:
        # what was committed is whole: each timer's next step follows exactly the steps recorded for it
        recorded = Counter(timer_id for timer_id, _, _ in committed)
        for timer in session.scalars(select(Timer)):
            assert timer.next_step == recorded[timer.id], timer.id

    second = start_scheduler()
    second.wait_until_idle_exit()

    shares = assert_every_due_step_fired_exactly_once(db, rt)
    assert set(shares) == {first.worker, second.worker}
    assert shares[second.worker] == len(expected) - len(committed)


def test_a_sweep_passes_over_cases_a_user_holds_instead_of_waiting_and_the_next_sweep_takes_them(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, tmp_path: Path
) -> None:
    open_cases(db, rt, clock, province, 300)
    expected = due_steps(db, rt, NOW)
    # lock_timeout turns any wait for a row lock into an error; a sweep that skips locked rows never waits
    tick = [str(QMSFLOW), "tick", "--now", NOW.isoformat()]
    env = qmsflow_env(db, tmp_path / "instance", PGOPTIONS="-c lock_timeout=5s")

    with db.engine.connect() as user, user.begin():
        # a user's transition holds its case row until it commits (cases.load_case_for_update)
        held = list(user.scalars(select(Case.id).order_by(Case.id).limit(3).with_for_update()))
        while_held = subprocess.run(tick, env=env, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
        assert while_held.returncode == 0, while_held.stderr
    with db.read() as session:
        held_timers = set(session.scalars(select(Timer.id).where(Timer.case_id.in_(held))))
    fired = {(timer_id, step) for timer_id, step, _ in firings(db)}
    assert fired == {(timer_id, step) for timer_id, step in expected if timer_id not in held_timers}

    after = subprocess.run(tick, env=env, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    assert after.returncode == 0, after.stderr
    assert_every_due_step_fired_exactly_once(db, rt)


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(port: int) -> tuple[int, str]:
    """The web process's /healthz answer (status, body), or (0, why) while it does not answer yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def test_a_scheduler_on_another_calendar_file_refuses_and_the_others_fire_every_step_of_the_stored_one_once(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, tmp_path: Path
) -> None:
    # Three schedulers and one web process; one scheduler has a calendar file with one more day off.
    # Before the calendar authority, each process planned on its own file, so their rows moved back
    # and forth and the sweep could claim the same cases without firing (review reproduction b_livelock).
    open_cases(db, rt, clock, province, 300)
    expected = due_steps(db, rt, NOW)
    other_calendar = tmp_path / "other-calendar.yaml"
    other_calendar.write_text("2026:\n  working_days: ['2026-08-22']\n  days_off: ['2026-02-10']\n")
    instance = tmp_path / "instance"
    processes: list[subprocess.Popen[bytes]] = []
    logs = {name: tmp_path / f"{name}.log" for name in ("web", "mismatched", "a", "b")}

    def start(name: str, args: list[str], **extra: str) -> subprocess.Popen[bytes]:
        with logs[name].open("wb") as out:
            popen = subprocess.Popen([str(QMSFLOW), *args], env=qmsflow_env(db, instance, **extra), stdout=out, stderr=subprocess.STDOUT)
        processes.append(popen)
        return popen

    try:
        port = free_port()
        web = start("web", ["serve", "--no-scheduler", "--port", str(port)])
        poll(lambda: health(port)[0] != 0 or web.poll() is not None, "the web process answers")
        assert health(port)[0] == 200, logs["web"].read_text(errors="replace")
        # the mismatched scheduler keeps running (no --exit-when-idle): it is refused every second
        mismatched = start(
            "mismatched", ["scheduler", "--interval", "1", "--now", NOW.isoformat()], QMSFLOW_CALENDAR_FILE=str(other_calendar)
        )
        poll(lambda: "calendar:" in logs["mismatched"].read_text(errors="replace"), "the mismatched scheduler reports it")
        schedulers = [
            start(name, ["scheduler", "--exit-when-idle", "--interval", "1", "--now", NOW.isoformat()]) for name in ("a", "b")
        ]
        for scheduler in schedulers:
            assert scheduler.wait(timeout=HANG_GUARD_SECONDS) == 0
        assert mismatched.poll() is None  # still running: it routes and sends, it only fires nothing
        mismatched.send_signal(signal.SIGINT)
        mismatched.wait(timeout=HANG_GUARD_SECONDS)
        assert health(port)[0] == 200  # the web process is on the stored calendar
    finally:
        for popen in processes:
            if popen.poll() is None:
                popen.kill()
                popen.wait()

    shares = assert_every_due_step_fired_exactly_once(db, rt)
    # all by the two on the stored calendar (one may have found everything taken), none by the mismatched one
    assert set(shares) <= {f"{socket.gethostname()}:{s.pid}" for s in schedulers}
    assert f"{socket.gethostname()}:{mismatched.pid}" not in shares
    said = logs["mismatched"].read_text(errors="replace")
    assert "is not the stored one" in said and "qmsflow calendar replan" in said
    assert len([line for line in said.splitlines() if " ERROR " in line and "calendar:" in line]) == 1, said
    assert len(expected) == sum(shares.values())
