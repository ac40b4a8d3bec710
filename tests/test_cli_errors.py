"""A newcomer's mistakes end in one line and a documented exit code, never a traceback, and change nothing."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import make_url

from qmsflow.cli import main
from qmsflow.engine import Database

Runner = Callable[..., Result]


def _invoke(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=True)
    # catch_exceptions=True: any exception other than SystemExit would land here, i.e. a traceback for the user.
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"qmsflow {' '.join(args)} raised {result.exception!r}") from result.exception
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def bare(tmp_path: Path) -> tuple[Runner, Path]:
    """A folder where qmsflow was never initialised: the default SQLite database, no history key."""
    instance = tmp_path / "instance"
    env = {"QMSFLOW_INSTANCE_PATH": str(instance), "QMSFLOW_DATABASE_URL": "", "QMSFLOW_HISTORY_KEY": ""}
    return (lambda *args, **kw: _invoke(env, *args, **kw)), instance


@pytest.fixture
def run(db: Database, tmp_path: Path) -> Runner:
    """``qmsflow ARGS`` against the test database (both backends) with the demo loaded."""
    env = {
        "QMSFLOW_INSTANCE_PATH": str(tmp_path / "instance"),
        "QMSFLOW_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
        "QMSFLOW_HISTORY_KEY": "cli-test-key",
    }
    assert _invoke(env, "demo", "--as-of", "2026-11-23").exit_code == 0
    return lambda *args, **kw: _invoke(env, *args, **kw)


@pytest.mark.parametrize("year", ["0", "9999", "10000", "99999", "-5"])
def test_calendar_show_refuses_a_year_out_of_range(bare: tuple[Runner, Path], year: str) -> None:
    invoke, _ = bare
    result = invoke("calendar", "show", "--", year)
    assert result.exit_code == 2 and "1900<=x<=2199" in result.output


def test_outside_an_initialised_folder_nothing_is_created_and_each_command_says_run_init(bare: tuple[Runner, Path]) -> None:
    invoke, instance = bare
    for args in (["users", "list"], ["cases", "list", "--as", "x"], ["users", "create", "a.b", "--role", "viewer"],
                 ["cases", "advance", "1", "e", "--as", "x"], ["timers", "list"], ["tick"], ["audit", "verify"],
                 ["calendar", "replan"], ["cases", "show", "1", "--as", "x"]):
        result = invoke(*args)
        assert result.exit_code == 10, (args, result.output)
        assert "qmsflow init" in result.output, (args, result.output)
    assert not instance.exists()  # nothing was created silently
    # reading definitions and the calendar needs neither a database nor the history key
    assert invoke("workflows", "list").exit_code == 0
    shown = invoke("calendar", "show", "2026")
    assert shown.exit_code == 0 and "2026-08-22 Sat working" in shown.output
    assert not instance.exists()


def test_a_database_without_the_schema_or_with_an_older_one_names_qmsflow_init(bare: tuple[Runner, Path], sqlite_template: Path) -> None:
    invoke, instance = bare
    instance.mkdir()
    sqlite3.connect(instance / "qmsflow.sqlite3").close()  # an empty file: not qmsflow's
    empty = invoke("users", "list")
    assert empty.exit_code == 10 and "no qmsflow schema" in empty.output and "qmsflow init" in empty.output
    (instance / "qmsflow.sqlite3").write_bytes(sqlite_template.read_bytes())
    with sqlite3.connect(instance / "qmsflow.sqlite3") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    older = invoke("users", "list")
    assert older.exit_code == 10 and "older qmsflow schema" in older.output and "qmsflow init" in older.output


@pytest.mark.parametrize("url, says", [("garbage", "not a database URL"), ("mysql://u@h/db", "is not supported")])
def test_an_unsupported_database_url_is_a_configuration_error(tmp_path: Path, url: str, says: str) -> None:
    env = {"QMSFLOW_INSTANCE_PATH": str(tmp_path / "i"), "QMSFLOW_DATABASE_URL": url, "QMSFLOW_HISTORY_KEY": "k"}
    for args in (["init"], ["users", "list"], ["cases", "list", "--as", "x"], ["timers", "list"], ["audit", "verify"]):
        result = _invoke(env, *args)
        assert result.exit_code == 10 and says in result.output, (args, result.output)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_or_missing_postgresql_database_is_unavailable(pg_db: Database, tmp_path: Path) -> None:
    missing = make_url(pg_db.engine.url.render_as_string(hide_password=False)).set(database="qmsflow_missing_db")
    for url in (missing.render_as_string(hide_password=False), f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/qmsflow"):
        env = {"QMSFLOW_INSTANCE_PATH": str(tmp_path / "i"), "QMSFLOW_DATABASE_URL": url, "QMSFLOW_HISTORY_KEY": "k"}
        for args in (["init"], ["users", "list"], ["cases", "list", "--as", "x"], ["timers", "list"], ["audit", "verify"]):
            result = _invoke(env, *args)
            assert result.exit_code == 12, (url, args, result.output)
            assert "cannot use the database" in result.output


def test_a_busy_sqlite_database_exits_11_and_changes_nothing(tmp_path: Path, sqlite_template: Path) -> None:
    # SQLite's write lock held by another connection; PostgreSQL's busy errors are pinned in tests/engine/test_db_errors.py.
    path = tmp_path / "busy.sqlite3"
    path.write_bytes(sqlite_template.read_bytes())
    env = {"QMSFLOW_INSTANCE_PATH": str(tmp_path / "instance"), "QMSFLOW_DATABASE_URL": f"sqlite:///{path}",
           "QMSFLOW_HISTORY_KEY": "cli-test-key", "QMSFLOW_SQLITE_BUSY_TIMEOUT_MS": "50"}
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = _invoke(env, "users", "create", "late.comer", "--role", "viewer")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 11 and "busy" in result.output and "try again" in result.output
    assert "late.comer" not in _invoke(env, "users", "list").output


def test_refusals_that_used_to_pass_silently(run: Runner, tmp_path: Path) -> None:
    assert run("timers", "list", "--limit", "-1").exit_code == 2
    assert run("timers", "list", "--limit", "0").exit_code == 2
    state = run("cases", "list", "--as", "tdc.lan", "--state", "buildin")
    assert state.exit_code == 2 and "did you mean building" in state.output
    workflow = run("cases", "list", "--as", "tdc.lan", "--workflow", "nonsense")
    assert workflow.exit_code == 2 and "qms_lifecycle" in workflow.output
    assert run("cases", "advance", "4", "establish_committee", "--as", "stp.iso", "--expect-version", "-5").exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run("workflows", "validate", str(empty))
    assert nothing.exit_code == 2 and "no definition files" in nothing.output


def test_a_misspelt_event_says_there_is_no_such_event_and_names_the_closest(run: Runner) -> None:
    result = run("cases", "advance", "4", "establish_comittee", "--as", "stp.iso")
    assert result.exit_code == 6  # still InvalidTransition, after scope, role and version
    assert "has no event 'establish_comittee'" in result.output and "did you mean establish_committee" in result.output
    hidden = run("cases", "advance", "4", "establish_comittee", "--as", "tnh.iso")
    assert hidden.exit_code == 4  # scope first: a case you may not see is not found, whatever the event
    stale = run("cases", "advance", "4", "establish_comittee", "--as", "stp.iso", "--expect-version", "1")
    assert stale.exit_code == 5


def test_serve_on_a_port_in_use_refuses_before_announcing(run: Runner) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run("serve", "--no-scheduler", "--port", port)
    assert result.exit_code == 10 and "cannot listen on 127.0.0.1:" in result.output
    assert "qmsflow on http" not in result.output


def test_an_unexpected_error_is_one_line_exit_70_and_debug_shows_the_traceback(run: Runner, monkeypatch: pytest.MonkeyPatch, db: Database, tmp_path: Path) -> None:
    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr("qmsflow.engine.history.verify_all", broken)
    result = run("audit", "verify")
    assert result.exit_code == 70 and "internal error: RuntimeError: simulated bug" in result.output and "--debug" in result.output
    env = {"QMSFLOW_INSTANCE_PATH": str(tmp_path / "instance"),
           "QMSFLOW_DATABASE_URL": db.engine.url.render_as_string(hide_password=False), "QMSFLOW_HISTORY_KEY": "cli-test-key"}
    debug = CliRunner().invoke(main, ["--debug", "audit", "verify"], env=env)
    assert isinstance(debug.exception, RuntimeError)


def test_a_driver_error_inside_a_command_is_translated(run: Runner, db: Database) -> None:
    with db.write() as session:  # a unique violation the services do not check for themselves
        session.execute(text("CREATE UNIQUE INDEX only_one_email ON users (email)"))
    try:
        result = run("users", "create", "twin", "--role", "viewer", "--email", "tdc.lan@angiang.example")
        assert result.exit_code == 8 and "already stored" in result.output
    finally:  # the PostgreSQL database is shared by the run: leave its schema as the migrations made it
        with db.write() as session:
            session.execute(text("DROP INDEX only_one_email"))


# -------------------------------------------------------------------------- random arguments


COMMANDS: list[list[str]] = [
    ["init"], ["demo"], ["users", "create"], ["users", "list"], ["workflows", "validate"], ["workflows", "list"],
    ["cases", "list"], ["cases", "show"], ["cases", "open"], ["cases", "advance"], ["audit", "verify"],
    ["calendar", "show"], ["calendar", "replan"], ["tick"], ["timers", "list"],
]
TOKENS = st.sampled_from([
    "--as", "tdc.lan", "stp.iso", "lanhdao", "nobody", "--data", "a=b", "{", "{}", "[1]", '{"committee_decided_on": "x"}',
    "--json", "--dry-run", "--now", "--in", "30d", "0d", "99999w", "-1", "0", "4", "12", "2026", "99999999999999999999",
    "--limit", "--due-before", "--due-within", "2026-11-28T08:00:00+07:00", "2026-13-01", "--expect-version",
    "--workflow", "qms_lifecycle", "--state", "building", "--role", "viewer", "--unit", "SNV", "--email", "x@y",
    "--as-of", "2030-02-29", "2031-06-30", "qmsflow/workflows", "/nonexistent", "establish_committee", "approve_plan",
    "--password-stdin", "--full-name", "", "é", "--", "--help",
])


@pytest.fixture(scope="module")
def isolated_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An instance folder of its own, initialised with the demo (SQLite)."""
    instance = tmp_path_factory.mktemp("random-cli") / "instance"
    env = {"QMSFLOW_INSTANCE_PATH": str(instance), "QMSFLOW_DATABASE_URL": "", "QMSFLOW_HISTORY_KEY": ""}
    assert _invoke(env, "demo", "--as-of", "2026-11-23").exit_code == 0
    return env


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(COMMANDS), tokens=st.lists(TOKENS | st.text(max_size=12), max_size=8))
def test_random_arguments_to_any_command_never_raise(isolated_env: dict[str, str], command: list[str], tokens: list[str]) -> None:
    result = _invoke(isolated_env, *command, *tokens, input="a password long enough\n")
    assert result.exit_code in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12), (command, tokens, result.output)


def test_scheduler_and_serve_refuse_an_uninitialised_folder_and_bad_options(bare: tuple[Runner, Path]) -> None:
    invoke, instance = bare
    for args in (["scheduler", "--exit-when-idle"], ["serve", "--no-scheduler"]):
        result = invoke(*args)
        assert result.exit_code == 10 and "run `qmsflow init` here" in result.output, (args, result.output)
    assert invoke("scheduler", "--interval", "0").exit_code == 2
    assert invoke("scheduler", "--now", "yesterday").exit_code == 2
    assert invoke("serve", "--port", "70000").exit_code == 2
    assert not instance.exists()


def test_help_imports_neither_sqlalchemy_nor_alembic() -> None:
    # Regression: importing qmsflow.cli cost about a second (SQLAlchemy, Alembic) before --help could print.
    probe = (
        "import sys\n"
        "from qmsflow.cli import main\n"
        "try:\n    main(['--help'], prog_name='qmsflow')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('sqlalchemy', 'alembic', 'ruamel.yaml', 'holidays', 'pydantic') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "Usage: qmsflow" in done.stdout
