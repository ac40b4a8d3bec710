"""Start-up time of the command line: ``qmsflow --help`` and a read-only command against ``python -c pass``.

Each command runs as a fresh process, as an operator types it; the figure is the median wall time of
several runs, measured in this run next to the bare interpreter on the same machine. ``cases list``
reads a demo province loaded (untimed) into a scratch database of the backend asked for. The check
behind each row is that the command exited 0 and printed what it should.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .databases import Servers, scratch
from .report import Report, Row, Target

HELP_TARGET = Target("<=", 8.0)
READ_TARGET = Target("<=", 25.0)


def _timed(argv: list[str], env: dict[str, str], cwd: Path, runs: int) -> tuple[float, str]:
    """Median wall time of ``runs`` fresh processes, and the check ("ok", or what went wrong)."""
    times: list[float] = []
    check = "ok"
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            check = f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
    return statistics.median(times), check


def _qmsflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "qmsflow.cli", *args]


def run(report: Report, servers: Servers, backends: list[str], scale: float, smoke: bool) -> None:
    """Measure on the first backend asked for (start-up barely depends on it; the read does)."""
    backend = backends[0]
    runs = 3 if smoke else max(5, int(15 * scale))
    report.sizes["startup"] = f"median of {runs} fresh processes each; cases list over the demo province ({backend})"
    with scratch(servers, backend, "startup") as url, tempfile.TemporaryDirectory(dir=servers.workdir) as instance:
        env = {**os.environ, "QMSFLOW_INSTANCE_PATH": instance, "QMSFLOW_DATABASE_URL": url, "QMSFLOW_HISTORY_KEY": "bench-key"}
        env.pop("QMSFLOW_DEBUG", None)
        cwd = Path(instance)
        loaded = subprocess.run(_qmsflow("demo", "--as-of", "2026-11-23"), env=env, cwd=cwd, capture_output=True, text=True, check=False)
        bare, bare_check = _timed([sys.executable, "-c", "pass"], env, cwd, runs)
        helped, help_check = _timed(_qmsflow("--help"), env, cwd, runs)
        listed, list_check = _timed(_qmsflow("cases", "list", "--as", "tdc.lan"), env, cwd, runs)
        if loaded.returncode != 0:
            list_check = f"demo did not load: {loaded.stderr.strip()[-200:]}"
    report.add(Row("start-up: qmsflow --help", backend, "qmsflow", helped * 1000, "python -c pass", bare * 1000, "ms", HELP_TARGET,
                   help_check if bare_check == "ok" else bare_check))
    report.add(Row("start-up: qmsflow cases list", backend, "qmsflow", listed * 1000, "python -c pass", bare * 1000, "ms", READ_TARGET,
                   list_check if bare_check == "ok" else bare_check))


NOTES = [
    "Start-up: each figure is the median wall time of fresh processes (python -m qmsflow.cli, as the console "
    "script runs it), next to `python -c pass` in the same run. qmsflow.cli imports only click at import time "
    "and each command imports what it uses, so --help loads neither SQLAlchemy nor Alembic. A read-only command "
    "imports only the engine modules it calls (qmsflow/engine/__init__.py resolves its names on first use), "
    "never imports `holidays` (the calendar makes its holiday table on first use), and reads the workflow "
    "definitions from the instance folder's cache/ of parsed YAML instead of running ruamel's pure-Python "
    "parser; what is left is mostly importing SQLAlchemy and its PostgreSQL dialect (which the Index "
    "arguments load even on SQLite), pydantic, and mapping the models.",
]
