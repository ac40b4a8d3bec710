"""Advances per second through the JSON API against the engine called in-process, in the same run.

    python -m bench.api_rate [--backend sqlite|postgresql|both] [--cases-per-client 2] [--rounds 3]

For each backend, a scratch database with one school per case and its ISO officer; each client (a
thread) advances its own cases through the 8 lifecycle events (bench/world.py). The baseline
calls ``engine.advance`` in-process, one write transaction per event, with the same number of
threads; the API run sends ``POST /api/v1/cases/{id}/events`` (with ``expected_version``) to a real
``qmsflow serve --no-scheduler --threads 16`` over keep-alive connections, one bearer token per
officer. Rounds interleave baseline and API on fresh cases; the table gives advances per second
(median and range of the rounds), the ratio API/engine, and the median and 95th percentile
latency of one advance. Not yet registered in ``python -m bench`` (bench/__main__.py).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from qmsflow.engine import advance
from qmsflow.engine.db import Database
from qmsflow.engine.errors import DatabaseBusy
from qmsflow.engine.models import Unit
from qmsflow.engine.permissions import CONSOLE
from qmsflow.engine.tokens import create_token
from qmsflow.engine.users import create_user

from .databases import Servers, migrated, postgres_server, scratch
from .world import HISTORY_KEY, LIFECYCLE, local, officer, open_lifecycles, runtime, seed_schools

CLIENTS = (1, 4, 16)
REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(url: str, workdir: Path) -> Iterator[int]:
    """Run ``qmsflow serve --no-scheduler --threads 16`` on ``url``; yield its port once /healthz answers."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "QMSFLOW_DATABASE_URL": url, "QMSFLOW_HISTORY_KEY": HISTORY_KEY.decode(),
           "QMSFLOW_SECRET_KEY": "b" * 32, "QMSFLOW_INSTANCE_PATH": str(workdir / "instance"),
           "QMSFLOW_API_RATE_LIMIT_PER_MINUTE": "0"}
    log = (workdir / "serve.log").open("w+b")
    proc = subprocess.Popen([sys.executable, "-m", "qmsflow.cli", "serve", "--no-scheduler", "--threads", "16", "--port", str(port)],
                            env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"serve exited: {log.read().decode(errors='replace')[-400:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not answer within 60 s")
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _users_and_tokens(db: Database, unit_ids: Sequence[int]) -> dict[int, str]:
    rt = runtime()
    tokens = {}
    with db.write() as session:
        units = {u.id: u for u in session.scalars(select(Unit).where(Unit.id.in_(unit_ids)))}
        for unit_id in unit_ids:
            user = create_user(session, username=f"officer{unit_id}", role="unit_officer", unit=units[unit_id],
                               now=rt.clock.now(), rt=rt, actor=CONSOLE)
            tokens[unit_id] = create_token(session, rt, CONSOLE, user, name="bench")[1]
    return tokens


def _timed(clients: int, work: list[list[tuple[int, int]]], fire: Callable[[int, int, int, int], None]) -> tuple[float, list[float]]:
    """Run each client's (case, unit) list in its own thread; return advances per second and each advance's latency."""
    latencies: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        mine: list[float] = []
        barrier.wait()
        try:
            for case_id, unit_id in work[index]:
                for step, _ in enumerate(LIFECYCLE):
                    start = time.perf_counter()
                    fire(index, case_id, unit_id, step)
                    mine.append(time.perf_counter() - start)
        except BaseException as exc:  # reported after the run: a refused advance makes the numbers meaningless
            with lock:
                failures.append(exc)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{len(failures)} client(s) failed: {failures[0]!r}")
    return len(latencies) / elapsed, latencies


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def run_backend(servers: Servers, backend: str, cases_per_client: int, rounds: int) -> list[str]:
    """Measure one backend; return its table rows."""
    rows = []
    with scratch(servers, backend, "apirate") as url:
        db = migrated(url)
        need = sum(CLIENTS) * cases_per_client * rounds * 2
        unit_ids = seed_schools(db, need)
        rt = runtime()
        case_ids = open_lifecycles(db, rt, unit_ids)
        rt.clock.set(local(LIFECYCLE[-1].day))  # type: ignore[attr-defined]  # every step's dates are then in the past
        tokens = _users_and_tokens(db, unit_ids)
        pool = list(zip(case_ids, unit_ids, strict=True))
        with serving(url, servers.workdir) as port:
            for clients in CLIENTS:
                per_round: dict[str, list[float]] = {"engine": [], "api": []}
                retries, retry_lock = [0, 0], threading.Lock()
                lat: dict[str, list[float]] = {"engine": [], "api": []}
                for _ in range(rounds):
                    for kind in ("engine", "api"):
                        work = [[pool.pop() for _ in range(cases_per_client)] for _ in range(clients)]
                        if kind == "engine":
                            def fire(index: int, case_id: int, unit_id: int, step: int,
                                     retries=retries, retry_lock=retry_lock) -> None:
                                for attempt in range(5):  # DatabaseBusy, "nothing changed": retried, as the API's clients do
                                    try:
                                        with db.write() as session:
                                            advance(session, rt, officer(unit_id), case_id, LIFECYCLE[step].event,
                                                    LIFECYCLE[step].data, expected_version=step + 1)
                                        return
                                    except DatabaseBusy:
                                        if attempt == 4:
                                            raise
                                        with retry_lock:
                                            retries[1] += 1
                        else:
                            connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(clients)]

                            def fire(index: int, case_id: int, unit_id: int, step: int, connections=connections,  # type: ignore[misc]
                                     retries=retries, retry_lock=retry_lock) -> None:
                                body = json.dumps({"event": LIFECYCLE[step].event, "data": LIFECYCLE[step].data, "expected_version": step + 1})
                                conn = connections[index]
                                for _attempt in range(5):  # 503 "busy, nothing changed": retried, as an integrator would
                                    conn.request("POST", f"/api/v1/cases/{case_id}/events", body=body,
                                                 headers={"Authorization": f"Bearer {tokens[unit_id]}", "Content-Type": "application/json"})
                                    response = conn.getresponse()
                                    payload = response.read()
                                    if response.status != 503:
                                        break
                                    with retry_lock:
                                        retries[0] += 1
                                if response.status != 200:
                                    raise RuntimeError(f"{response.status}: {payload[:300]!r}")
                        rate, latencies = _timed(clients, work, fire)
                        per_round[kind].append(rate)
                        lat[kind].extend(latencies)
                ratios = [a / e for a, e in zip(per_round["api"], per_round["engine"], strict=True)]
                rows.append(
                    f"| {backend} | {clients} | {statistics.median(per_round['engine']):.0f} | {statistics.median(per_round['api']):.0f} "
                    f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) "
                    f"| {statistics.median(lat['engine']) * 1000:.1f} / {_p95(lat['engine']) * 1000:.1f} "
                    f"| {statistics.median(lat['api']) * 1000:.1f} / {_p95(lat['api']) * 1000:.1f} | {retries[1]} / {retries[0]} |"
                )
                print(rows[-1], flush=True)
        db.dispose()
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, run the backends, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.api_rate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--cases-per-client", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="qmsflow-apirate-") as tmp:
        servers = Servers(Path(tmp), postgres_server(None))
        print("| backend | clients | engine adv/s | API adv/s | API/engine (range) | engine ms median / p95 | API ms median / p95 | busy retried (engine / API) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for backend in servers.backends(args.backend):
            run_backend(servers, backend, args.cases_per_client, args.rounds)


if __name__ == "__main__":
    main()
