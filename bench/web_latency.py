"""Web latency: My work and the case page served by ``qmsflow serve`` on loopback, at a province's size.

The province (setup, in bulk, never timed): 5,000 units (the People's Committee, the Dept of S&T as the
lead unit, 48 supervising authorities and their schools, one authority with exactly 100 schools) and one
lifecycle case per unit with 200,000 history rows between them. Every case has gone from ``planned`` to
``announced`` through the 8 lifecycle events (bench/world.py), with the reminders and escalations of its
building and applying deadlines in between, and waits on its notice to the Dept of S&T: a pending
``notice_due`` timer planned with the engine's own plan, due from six weeks ago to two weeks ahead, so
My work has late, escalated and on-time rows. The history rows are real chains: each is signed with the
engine's canonical form (``history.row_hash``, form 2, key "1") and linked to the one before, and the
case rows hold each chain's head and length; ``qmsflow audit verify`` must pass on the instance before
anything is timed, or every row fails. A supervisor of the 100-school authority and the lead are made
through the engine's user service (argon2 passwords).

Then ``qmsflow serve --no-scheduler`` runs on that instance as a subprocess, and a client signs each of
them in over HTTP (the CSRF token read from the sign-in page) and keeps its connection alive. Each
round times, per page, a run of requests, each followed by a GET of a static stylesheet from the same
server on the same connection: the baseline, the cost of one request through waitress and Flask with
nothing to render. Rounds take the pages in a rotating order. The figures are client-side wall times
(request sent to body read), the median and the 95th percentile over every request of every round.
"""

from __future__ import annotations

import http.client
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from qmsflow.engine import users
from qmsflow.engine.calendar import deadline_instant
from qmsflow.engine.clock import LOCAL_TZ, local_date
from qmsflow.engine.history import CURRENT_FORM, row_hash
from qmsflow.engine.models import Unit
from qmsflow.engine.permissions import CONSOLE
from qmsflow.engine.timers import plan_steps

from .bulk import CASE_COLUMNS, HISTORY_COLUMNS, PARENT_COLUMNS, TIMER_COLUMNS, Loader
from .databases import Servers, migrated, scratch
from .report import Report, Row, Target
from .world import HISTORY_KEY, LIFECYCLE, VALID_FROM, WORKFLOW, runtime

MEDIAN_TARGET = Target("<=", 100.0, "ms")
P95_TARGET = Target("<=", 250.0, "ms")
PASSWORD = "bench-password-2026"
KEY_ID = "1"
STATIC = "/static/css/qmsflow.css"
NOTICE = "announced.notice_due"
CASE_BATCH = 2_000
# Where each lifecycle step leaves the case, and the deadline running in the state it leaves from.
STATE_TIMERS = {"building": "build_due", "applying": "apply_due"}


@dataclass(frozen=True)
class Sizes:
    """Units, history rows, the supervisor's units, and how many requests are timed."""

    units: int
    history: int
    supervised: int
    rounds: int
    requests: int

    @classmethod
    def for_run(cls, scale: float, smoke: bool) -> Sizes:
        """Full run: 5,000 units, 200,000 history rows, a supervisor of 100 units; 5 rounds of 40 requests a page."""
        if smoke:
            return cls(units=60, history=900, supervised=10, rounds=2, requests=3)
        units = max(200, int(5_000 * scale))
        return cls(units=units, history=max(units * 10, int(200_000 * scale)), supervised=100, rounds=5, requests=40)


@dataclass(frozen=True)
class World:
    """What was loaded, and the ids the pages are asked for."""

    units: int
    cases: int
    history: int
    late: int
    supervisor_unit: int
    lead_unit: int
    case_id: int
    case_unit_name: str


# ------------------------------------------------------------------------------------- the province


def load_province(url: str, sizes: Sizes, now: datetime) -> World:
    """Insert the province in bulk (setup, not timed) and return what was loaded."""
    rng = random.Random(13)
    rt = runtime()
    definition = rt.registry.get(WORKFLOW, 1)
    loader = Loader(url)
    today = local_date(now)

    authorities = max(2, sizes.units // 100 - 2)
    first_school = 3 + authorities
    schools = list(range(first_school, sizes.units + 1))
    if len(schools) <= sizes.supervised:
        raise ValueError(f"{sizes.units} units are too few for a supervisor of {sizes.supervised}")
    units: list[tuple[Any, ...]] = [
        (1, "PC", "UBND tỉnh", "province_pc", False, VALID_FROM, None),
        (2, "SKHCN", "Sở Khoa học và Công nghệ", "department", True, VALID_FROM, None),
    ]
    parents: list[tuple[Any, ...]] = [(2, 1, VALID_FROM, None)]
    for a in range(3, first_school):
        units.append((a, f"A{a}", f"Sở {a}" if a % 2 else f"UBND xã {a}", "department" if a % 2 else "commune_pc", False, VALID_FROM, None))
        parents.append((a, 1, VALID_FROM, None))
    supervisor_unit = 3
    for n, s in enumerate(schools):
        parent = supervisor_unit if n < sizes.supervised else 4 + (n - sizes.supervised) % (authorities - 1)
        units.append((s, f"S{s}", f"Trường THCS số {s}", "lower_secondary_school", False, VALID_FROM, None))
        parents.append((s, parent, VALID_FROM, None))
    count_units = loader.insert_units(units)
    loader.insert("unit_parents", PARENT_COLUMNS, parents)

    case_units = [u[0] for u in units if u[0] != 1]
    code = {u[0]: u[1] for u in units}
    parent_of = {p[0]: p[1] for p in parents}
    per_case, extra = divmod(sizes.history, len(case_units))
    if per_case < 1 + len(LIFECYCLE):
        raise ValueError(f"{sizes.history} history rows are too few for {len(case_units)} cases")
    data: dict[str, Any] = {}
    for step in LIFECYCLE:
        data.update(step.data)
    spec, ladder = definition.timer_spec(NOTICE), definition.ladder(NOTICE)
    late = count_cases = count_history = 0
    # a batch of cases at a time, so the country's 5,000,000 rows never sit in memory at once
    for first in range(0, len(case_units), CASE_BATCH):
        cases: list[tuple[Any, ...]] = []
        timers: list[tuple[Any, ...]] = []
        history: list[tuple[Any, ...]] = []
        for case_id, unit_id in enumerate(case_units[first : first + CASE_BATCH], start=first + 1):
            start = today - timedelta(days=rng.randint(1, 60))
            due = rt.calendar.due_date(start, spec.length, spec.unit)
            steps = plan_steps(spec, ladder, start, due, rt.calendar)
            passed = [s for s in steps if s.at <= now]
            level = max((s.level for s in passed if s.kind == "escalation"), default=0)
            upcoming = next((s for s in steps if s.at > now), None)
            late += due < today
            announced_at = datetime.combine(start, datetime.min.time(), tzinfo=LOCAL_TZ).replace(hour=10)
            # the bodies its escalations went to (sweep.py): the unit's head, its supervisor, the lead, the People's Committee
            bodies = (code[unit_id], code[parent_of[unit_id]], code[2], code[1])
            rows = _chain(case_id, unit_id, code[unit_id], bodies, per_case + (1 if case_id <= extra else 0), announced_at)
            history.extend(rows)
            opened_at, head = rows[0][2], rows[-1][10]  # the chain's head: the last row's hash
            cases.append((case_id, unit_id, WORKFLOW, 1, "announced", 1 + len(LIFECYCLE), data, None, opened_at, announced_at,
                          None, head, len(rows)))
            timers.append(
                (case_id, case_id, "notice_due", "state", "announced", None, start, due, deadline_instant(due), "pending", level,
                 upcoming.index if upcoming else len(steps), upcoming.at if upcoming else None, announced_at, None)
            )
        count_cases += loader.insert("cases", CASE_COLUMNS, cases)
        loader.insert("timers", TIMER_COLUMNS, timers)
        count_history += loader.insert("history", (*HISTORY_COLUMNS, "key_id", "form"), history)
    loader.reset_sequences(["units", "unit_versions", "unit_parents", "cases", "timers", "history"])
    loader.analyze()
    # the page asked for: a case of the supervisor's first school
    return World(count_units, count_cases, count_history, late, supervisor_unit, 2, case_units.index(first_school) + 1,
                 f"Trường THCS số {first_school}")


def _chain(
    case_id: int, unit_id: int, unit_code: str, bodies: tuple[str, ...], length: int, announced_at: datetime
) -> list[tuple[Any, ...]]:
    """Return one case's history rows, signed and chained: opened, the lifecycle, and its deadlines' reminders.

    The rows are a day apart and end with ``announce`` at ``announced_at``. The rows besides the nine
    events are the reminders and escalations of the building and applying deadlines, half in each state.
    """
    officer = f"officer{unit_id}"
    fillers = length - 1 - len(LIFECYCLE)
    in_building = fillers // 2
    plan: list[dict[str, Any]] = [
        {"kind": "opened", "event": None, "from_state": None, "to_state": "planned", "actor": "lead",
         "data": {"workflow": WORKFLOW, "version": 1, "unit": unit_code}}
    ]
    state = "planned"
    for step in LIFECYCLE:
        plan.append({"kind": "transition", "event": step.event, "from_state": state, "to_state": step.to_state, "actor": officer,
                     "data": dict(step.data)})
        state = step.to_state
        if step.event == "issue_documents":
            plan.extend(_deadline_rows("building", in_building, bodies))
        if step.event == "confirm_effective":
            plan.extend(_deadline_rows("applying", fillers - in_building, bodies))
    rows: list[tuple[Any, ...]] = []
    prev = ""
    for seq, fields in enumerate(plan, start=1):
        fields["at"] = announced_at - timedelta(days=len(plan) - seq)
        digest = row_hash(HISTORY_KEY, case_id, seq, fields, prev, KEY_ID)
        rows.append((case_id, seq, fields["at"], fields["kind"], fields["event"], fields["from_state"], fields["to_state"],
                     fields["actor"], fields["data"], prev, digest, KEY_ID, CURRENT_FORM))
        prev = digest
    return rows


def _deadline_rows(state: str, count: int, bodies: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """The sweep's rows for a state's deadline: a reminder, then escalations up the ladder, repeated."""
    timer = STATE_TIMERS[state]
    for i in range(count):
        base = {"timer": timer, "step": i % 5, "due": "2026-06-01", "scheduled_at": "2026-06-01T02:00:00.000000Z"}
        if i % 5 == 0:
            yield {"kind": "reminder", "event": None, "from_state": None, "to_state": None, "actor": "system", "data": base}
        else:
            target = ("unit_head", "supervisor", "lead", "provincial_pc")[i % 5 - 1]
            yield {"kind": "escalated", "event": None, "from_state": None, "to_state": None, "actor": "system",
                   "data": {**base, "level": i % 5, "target": target, "body": bodies[i % 5 - 1]}}


def make_users(db: Any, world: World, now: datetime) -> None:
    """The supervisor of the 100-school authority and the lead, with passwords, through the engine's user service."""
    rt = runtime()
    with db.write() as session:
        for username, role, unit_id in (("supervisor", "supervisor", world.supervisor_unit), ("lead", "lead", world.lead_unit)):
            users.create_user(
                session, username=username, role=role, now=now, unit=session.get(Unit, unit_id), full_name=username.title(),
                password=PASSWORD, rt=rt, actor=CONSOLE,
            )


# ------------------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(env: dict[str, str], cwd: Path) -> Iterator[int]:
    """Run ``qmsflow serve --no-scheduler`` on a free loopback port until it answers /healthz; yield the port."""
    port = _free_port()
    log = (cwd / "serve.log").open("w+b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "qmsflow.cli", "serve", "--no-scheduler", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"qmsflow serve exited {proc.returncode}: {log.read().decode(errors='replace')[-300:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("qmsflow serve did not answer /healthz within 60 s")
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Client:
    """One signed-in person over one keep-alive connection, with the session cookie kept."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        """Send one request on the kept connection; read the whole body; keep any cookie set."""
        headers = {"Accept-Language": "vi"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        content = response.read()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response.status, content

    def sign_in(self, username: str, password: str) -> None:
        """Sign in through the form, with the CSRF token the page gives; raise if it is refused."""
        status, page = self.request("GET", "/sign-in")
        found = re.search(rb'name="csrf_token" value="([^"]+)"', page)
        if status != 200 or found is None:
            raise RuntimeError(f"sign-in page: {status}, csrf token {'found' if found else 'missing'}")
        form = urlencode({"csrf_token": found.group(1).decode(), "username": username, "password": password})
        status, _ = self.request("POST", "/sign-in", form)
        if status != 302:
            raise RuntimeError(f"signing in {username} answered {status}, not a redirect")

    def timed_get(self, path: str) -> tuple[float, int, bytes]:
        """Return the milliseconds from sending a GET to reading its body, the status and the body."""
        started = time.perf_counter()
        status, body = self.request("GET", path)
        return (time.perf_counter() - started) * 1000, status, body

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


@dataclass
class Page:
    """A page to time: who asks, the path, a text it must contain; and what was measured."""

    label: str
    client: Client
    path: str
    must_show: bytes
    times: list[float] = field(default_factory=list)
    static: list[float] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)
    check: str = "ok"
    size: int = 0  # bytes of the page's body, as last served


def p95(values: Sequence[float]) -> float:
    """The 95th percentile (inclusive method: a value between two samples when it falls between them)."""
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def measure(pages: list[Page], rounds: int, requests: int) -> None:
    """Time every page ``requests`` times per round, each request followed by the static file, in rotating order."""
    for page in pages:  # one untimed warm-up each: templates compiled, statements cached
        page.client.timed_get(page.path)
        page.client.timed_get(STATIC)
    for r in range(rounds):
        for page in pages[r % len(pages):] + pages[: r % len(pages)]:
            this_round: list[float] = []
            for _ in range(requests):
                ms, status, body = page.client.timed_get(page.path)
                if status != 200 or page.must_show not in body:
                    page.check = f"{page.path}: {status}" + ("" if status != 200 else f", {page.must_show.decode()!r} missing")
                this_round.append(ms)
                page.size = len(body)
                static_ms, static_status, _ = page.client.timed_get(STATIC)
                if static_status != 200:
                    page.check = f"{STATIC}: {static_status}"
                page.static.append(static_ms)
            page.times.extend(this_round)
            page.round_medians.append(statistics.median(this_round))


def verify(env: dict[str, str], cwd: Path, world: World) -> tuple[str, str]:
    """Run ``qmsflow audit verify`` on the instance; return the check ("ok" or why not) and what it printed."""
    done = subprocess.run([sys.executable, "-m", "qmsflow.cli", "audit", "verify"], env=env, cwd=cwd, capture_output=True,
                          text=True, check=False)
    said = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        return f"audit verify exit {done.returncode}: {said[-200:]}", said
    if f"{world.history} history rows" not in said:  # every row was checked, none passed over (an unknown key)
        return f"audit verify did not check every row: {said[-200:]}", said
    return "ok", said


def run(report: Report, servers: Servers, backends: list[str], scale: float, smoke: bool) -> None:
    """Measure on every backend asked for."""
    sizes = Sizes.for_run(scale, smoke)
    now = datetime.now(LOCAL_TZ)
    for backend in backends:
        with scratch(servers, backend, "web") as url, tempfile.TemporaryDirectory(dir=servers.workdir) as instance:
            db = migrated(url)
            try:
                seeding = time.perf_counter()
                world = load_province(url, sizes, now)
                make_users(db, world, now)
                seeded = time.perf_counter() - seeding
            finally:
                db.dispose()
            env = {
                **os.environ, "QMSFLOW_INSTANCE_PATH": instance, "QMSFLOW_DATABASE_URL": url,
                "QMSFLOW_HISTORY_KEY": HISTORY_KEY.decode(), "QMSFLOW_SECRET_KEY": "bench-secret-key",
            }
            env.pop("QMSFLOW_DEBUG", None)
            cwd = Path(instance)
            verified, said = verify(env, cwd, world)
            report.sizes[f"web_latency ({backend})"] = (
                f"{world.units:,} units, {world.cases:,} cases ({world.late:,} late), {world.history:,} history rows, "
                f"seeded in {seeded:.0f} s; `qmsflow audit verify`: {said.splitlines()[-1] if said else 'nothing'}; {sizes.rounds} rounds of {sizes.requests} requests per page, each followed by {STATIC}"
            )
            pages: list[Page] = []
            with serving(env, cwd) as port:
                supervisor, lead = Client(port), Client(port)
                try:
                    supervisor.sign_in("supervisor", PASSWORD)
                    lead.sign_in("lead", PASSWORD)
                    pages = [
                        Page(f"My work, supervisor of {sizes.supervised} units", supervisor, "/", b"/cases/"),
                        Page("My work, the lead", lead, "/", b"/cases/"),
                        Page("case page, supervisor", supervisor, f"/cases/{world.case_id}", world.case_unit_name.encode()),
                    ]
                    measure(pages, sizes.rounds, sizes.requests)
                finally:
                    supervisor.close()
                    lead.close()
            report.sizes[f"web_latency ({backend})"] += "; pages served: " + ", ".join(f"{p.label} {p.size / 1024:.0f} KiB" for p in pages)
            for page in pages:
                check = verified if verified != "ok" else page.check
                spread = f"rounds {min(page.round_medians):.1f} to {max(page.round_medians):.1f} ms"
                static_median, static_p95 = statistics.median(page.static), p95(page.static)
                report.add(Row(f"web: {page.label}, median ({spread})", backend, page.label, statistics.median(page.times),
                               STATIC, static_median, "ms", MEDIAN_TARGET, check))
                report.add(Row(f"web: {page.label}, p95", backend, page.label, p95(page.times), f"{STATIC} p95", static_p95, "ms",
                               P95_TARGET, check))


NOTES = [
    "Web latency: client-side wall time of a keep-alive GET against `qmsflow serve --no-scheduler` (waitress, 8 threads) "
    "on loopback, one request at a time, the client on the same 2 cores as the server. The targets are absolute "
    "(median under 100 ms, 95th percentile under 250 ms: issue 13); the ratio is to a static stylesheet fetched "
    "right after each page on the same connection with the same session cookie, so it says how much of the time is "
    "the page and how much is the request itself. On each backend the province's chains pass `qmsflow audit verify` "
    "before anything is timed (a failure marks every row FAILED). The pending notice deadlines carry the level and "
    "next step the sweep would have reached, but their own reminder and escalation rows are not in the history (the "
    "rows between the events belong to the building and applying deadlines), so the chains replay and verify while "
    "the timeline is a little thinner than a real one.",
]

__all__ = ["NOTES", "Sizes", "load_province", "run"]
