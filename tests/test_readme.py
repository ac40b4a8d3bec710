"""The README's command-line examples work, as written, against a fresh demo loaded today.

Each command of the indented block under "Using it from the command line" runs in a shell from the
repository folder with ``.venv/bin`` on PATH, as the README says. ``serve`` and ``scheduler`` run until
they answer (``/healthz``, their start line), then are stopped; ``serve`` gets a free ``--port`` so
parallel runs do not collide. The demo loads as of the real today on purpose: that the examples hold
on any day is what this pins (qmsflow/demo.py moves the story to end the week before).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from qmsflow.engine import Database

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
LONG_RUNNING = ("qmsflow serve", "qmsflow scheduler")


def readme_commands() -> list[str]:
    """The commands of the README's command-line section, continuation lines joined."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Using it from the command line", 1)[1].split("\n## ", 1)[0]
    commands: list[str] = []
    pending = ""
    for line in section.splitlines():
        if not line.startswith("    "):
            continue
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        commands.append(pending)
        pending = ""
    return commands


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until(ready, process: subprocess.Popen[str], what: str) -> None:
    # A safety net against hanging the suite, not a timing assertion: start-up on a loaded machine varies.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"{what} exited {process.returncode}: {out}{err}")
        if ready():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} did not come up")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    assert "Traceback" not in err, err
    return out


def test_the_readme_lists_the_commands_it_documents() -> None:
    commands = readme_commands()
    assert len(commands) >= 10
    assert all(c.startswith("qmsflow ") for c in commands)
    assert any(c.startswith(LONG_RUNNING[0]) for c in commands) and any(c.startswith(LONG_RUNNING[1]) for c in commands)


def test_every_readme_command_works_on_a_fresh_demo(db: Database, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        # the commands run this checkout's code, also where the installed qmsflow is another checkout's
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "QMSFLOW_INSTANCE_PATH": str(tmp_path / "instance"),
        "QMSFLOW_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
        "PYTHONUNBUFFERED": "1",
    }
    for name in [k for k in env if k.startswith("QMSFLOW_") and k not in ("QMSFLOW_INSTANCE_PATH", "QMSFLOW_DATABASE_URL")]:
        env.pop(name)  # the README's reader has none of the test run's settings

    def shell(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, check=False)

    loaded = shell("qmsflow demo")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    for command in readme_commands():
        if command.startswith("qmsflow serve"):
            port = _free_port()
            process = subprocess.Popen(
                ["bash", "-c", f"exec {command.split('#')[0].strip()} --port {port}"],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )

            def answers(port: int = port) -> bool:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                        return bool(response.status == 200)
                except (urllib.error.URLError, OSError):
                    return False

            _wait_until(answers, process, command)
            assert "qmsflow on http://" in _stop(process)
            continue
        if command.startswith("qmsflow scheduler"):
            process = subprocess.Popen(
                ["bash", "-c", f"exec {command.split('#')[0].strip()}"],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            assert process.stdout is not None
            first = process.stdout.readline()  # the start line, printed before the first sweep
            assert re.match(r"scheduler \S+ on .* every \d+ s", first), first
            assert process.poll() is None, "the scheduler stopped on its own"
            _stop(process)
            continue
        done = shell(command)
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
        assert done.stdout.strip(), command
        assert "Traceback" not in done.stderr and "error:" not in done.stderr, f"{command}\n{done.stderr}"
        if command.startswith("qmsflow tick"):
            fired = re.search(r"would fire (\d+) steps", done.stdout)
            assert fired and int(fired.group(1)) > 0, done.stdout  # the look-ahead shows the coming deadlines
        if command.startswith("qmsflow cases advance"):
            assert "building -> building (version 3)" in done.stdout
