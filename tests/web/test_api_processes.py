"""Against real ``qmsflow serve`` processes (16 threads each), on SQLite and PostgreSQL: one Idempotency-Key
sent many times at once to two processes moves the case once (every answer is the first one or "still
running"); 50 advances released together at one version give one 200 and 49 x 409, and with If-Match
one 200 and 49 x 412, with no 5xx ("database is locked" included)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from sqlalchemy import func, select

from qmsflow.engine import Database
from qmsflow.engine.models import HistoryEntry
from tests.conftest import HISTORY_KEY
from tests.web.cases_support import World

REPO = Path(__file__).resolve().parents[2]
PER_SERVER = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(db: Database, tmp_path: Path, name: str) -> Iterator[int]:
    """Run ``qmsflow serve --no-scheduler --threads 16`` on the test database until /healthz answers; yield its port."""
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "QMSFLOW_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
        "QMSFLOW_HISTORY_KEY": HISTORY_KEY.decode(),
        "QMSFLOW_SECRET_KEY": "s" * 32,
        "QMSFLOW_INSTANCE_PATH": str(tmp_path / name),
        "QMSFLOW_EVIDENCE_DIR": str(tmp_path / "evidence"),
    }
    log = (tmp_path / f"{name}.log").open("w+b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "qmsflow.cli", "serve", "--no-scheduler", "--threads", str(PER_SERVER), "--port", str(port)],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"serve exited {proc.returncode}: {log.read().decode(errors='replace')[-500:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status in (200, 503):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve did not answer within 60 s"
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


def _history(db: Database, case_id: int) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(HistoryEntry).where(HistoryEntry.case_id == case_id)) or 0)


def test_one_idempotency_key_sent_at_once_to_two_processes_moves_the_case_once(
    db: Database, tokens: dict[str, str], world: World, tmp_path: Path
) -> None:
    before = _history(db, world.case)
    body = json.dumps({"event": "start_applying"})
    headers = {"Authorization": f"Bearer {tokens['tnh']}", "Content-Type": "application/json", "Idempotency-Key": "once-only"}
    with ExitStack() as stack:
        ports = [stack.enter_context(serving(db, tmp_path, f"web{i}")) for i in range(2)]
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for port in ports for _ in range(PER_SERVER)]
        for conn in connections:
            conn.connect()
        barrier = threading.Barrier(len(connections))
        answers: list[tuple[int, bytes]] = []
        lock = threading.Lock()

        def send(conn: http.client.HTTPConnection) -> None:
            barrier.wait()
            conn.request("POST", f"/api/v1/cases/{world.case}/events", body=body, headers=headers)
            response = conn.getresponse()
            with lock:
                answers.append((response.status, response.read()))

        threads = [threading.Thread(target=send, args=(c,)) for c in connections]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        # once every request has been answered, a retry gets the first answer
        retry = http.client.HTTPConnection("127.0.0.1", ports[1], timeout=60)
        retry.request("POST", f"/api/v1/cases/{world.case}/events", body=body, headers=headers)
        replay = retry.getresponse()
        replayed = (replay.status, replay.read())
    statuses = sorted(s for s, _ in answers)
    assert len(answers) == 2 * PER_SERVER
    assert set(statuses) <= {200, 409}, statuses
    ok = {b for s, b in answers if s == 200}
    assert len(ok) == 1, statuses  # the first answer, and replays of it byte for byte
    for status, raw in answers:
        if status == 409:
            assert json.loads(raw)["type"] == "urn:qmsflow:problem:idempotency-in-flight"
    assert replayed == (200, next(iter(ok)))
    assert _history(db, world.case) == before + 1


def _release_together(port: int, requests: list[tuple[str, dict[str, str]]], path: str) -> list[tuple[int, bytes]]:
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=120) for _ in requests]
    for conn in connections:
        conn.connect()
    barrier = threading.Barrier(len(connections))
    answers: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def send(conn: http.client.HTTPConnection, body: str, headers: dict[str, str]) -> None:
        barrier.wait()
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        with lock:
            answers.append((response.status, response.read()))

    threads = [threading.Thread(target=send, args=(c, b, h)) for c, (b, h) in zip(connections, requests, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return answers


def test_fifty_advances_at_one_version_give_one_200_and_49_409_then_the_same_with_if_match(
    db: Database, tokens: dict[str, str], world: World, tmp_path: Path
) -> None:
    before = _history(db, world.case)
    auth = {"Authorization": f"Bearer {tokens['tnh']}", "Content-Type": "application/json"}
    with serving(db, tmp_path, "web") as port:
        stale = json.dumps({"event": "start_applying", "expected_version": 4})
        answers = _release_together(port, [(stale, auth)] * 50, f"/api/v1/cases/{world.case}/events")
        statuses = sorted(s for s, _ in answers)
        assert statuses == [200] + [409] * 49, statuses
        assert {json.loads(b)["current_version"] for s, b in answers if s == 409} == {5}
        # the next event, conditional on If-Match instead
        body = json.dumps({"event": "record_internal_audit", "data": {
            "internal_audit_on": "2026-01-05", "internal_audit_report": "1/BC", "nonconformities_open": 0}})
        answers = _release_together(port, [(body, {**auth, "If-Match": '"5"'})] * 50, f"/api/v1/cases/{world.case}/events")
        statuses = sorted(s for s, _ in answers)
        assert statuses == [200] + [412] * 49, statuses
    assert _history(db, world.case) == before + 2
