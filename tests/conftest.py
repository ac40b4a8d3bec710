"""Fixtures shared by every suite: backends, database, runtime, clock, a small province.

Every database test runs on SQLite and on PostgreSQL. PostgreSQL comes from
QMSFLOW_TEST_POSTGRES_URL (``.ci/run`` creates a fresh database and passes it); without it the suite
tries the local server on 127.0.0.1:5432, makes its own throw-away database and drops it at the end.
If no server answers, the PostgreSQL suite is skipped and the run says so at the end; so is the
browser suite (tests/browser) without Debian's chromium or Playwright. With
QMSFLOW_REQUIRE_ALL_SUITES=1 (set by ``.ci/run``) a skipped suite fails the run instead.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TypeVar

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner, Result
from ruamel.yaml import YAML
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from qmsflow.bootstrap import upgrade
from qmsflow.config import CALENDAR_FILE
from qmsflow.engine import SYSTEM, Actor, FixedClock, Registry, Runtime, WorkingCalendar, calendar_store
from qmsflow.engine import users as users_module
from qmsflow.engine.calendar import CalendarOverrides
from qmsflow.engine.clock import LOCAL_TZ
from qmsflow.engine.db import Database, make_engine
from qmsflow.engine.models import Base, Case, Unit
from qmsflow.engine.units import UnitKind, create_unit, set_contact
from qmsflow.engine.users import create_user
from qmsflow.workflows import DIRECTORY as WORKFLOWS

HISTORY_KEY = b"test-history-key"
SKIPPED_SUITES: dict[str, str] = {}
RAN_SUITES: set[str] = set()  # the backends at least one test actually ran on
REQUIRE_ALL = os.environ.get("QMSFLOW_REQUIRE_ALL_SUITES") == "1"
SUITES = ("sqlite", "postgresql", "browser")
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... under pytest-xdist; "" otherwise

# Tests need passwords hashed, not hashed expensively: the engine's argon2 hasher at the library's
# standard cost (kept in PRODUCTION_HASHER, and tests/engine/test_signin.py checks it is that cost) is
# replaced for the run by the cheapest one argon2 accepts. A hash carries its own parameters, so a hash
# made here verifies cheaply in a `qmsflow serve` subprocess too.
PRODUCTION_HASHER = users_module._hasher
users_module._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def local(day: date, hour: int = 9, minute: int = 0) -> datetime:
    """An aware instant at ``hour`` on ``day`` in Asia/Ho_Chi_Minh."""
    return datetime.combine(day, time(hour, minute), tzinfo=LOCAL_TZ)


# ------------------------------------------------------------------------------------- PostgreSQL


class _Postgres:
    def __init__(self) -> None:
        self.url: str | None = None
        self.created: str | None = None
        self.admin = ""
        self.reason = ""

    def start(self) -> str | None:
        given = os.environ.get("QMSFLOW_TEST_POSTGRES_URL")
        if given and not WORKER:
            self.url = given
            return self.url
        # Under pytest-xdist each worker makes a database of its own (named after the given one, on its
        # server), so two workers never empty each other's tables.
        admin = str(make_url(given).set(database="postgres")) if given else "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        try:
            engine = create_engine(admin, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
            name = f"{make_url(given).database}_{WORKER}" if given else f"qmsflow_test_{uuid.uuid4().hex[:10]}"
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            engine.dispose()
        except Exception as exc:  # no server, no rights: the suite is skipped and says why
            self.reason = f"PostgreSQL not reachable on 127.0.0.1:5432 ({type(exc).__name__})"
            return None
        self.created = name
        self.admin = admin
        self.url = str(make_url(admin).set(database=name).render_as_string(hide_password=False))
        return self.url

    def stop(self) -> None:
        if not self.created:
            return
        engine = create_engine(self.admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.created}" WITH (FORCE)'))
        engine.dispose()


_POSTGRES = _Postgres()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """The PostgreSQL database of this run, or None when there is none."""
    url = _POSTGRES.start()
    yield url
    _POSTGRES.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once with Alembic; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    db = Database(make_engine(f"sqlite:///{path}"))
    upgrade(db)
    _store_shipped_calendar(db)
    db.dispose()
    return path


def _store_shipped_calendar(db: Database) -> None:
    """Store the shipped calendar, as ``qmsflow init`` does: the engine plans and sweeps only on the stored one."""
    overrides = CalendarOverrides.from_mapping(YAML(typ="safe", pure=True).load(CALENDAR_FILE.read_text("utf-8")))
    with db.write() as session:
        calendar_store.store(session, WorkingCalendar(overrides))


@pytest.fixture(scope="session")
def postgres_db(postgres_url: str | None) -> Iterator[Database | None]:
    """The migrated PostgreSQL database shared by the run (tables emptied between tests)."""
    if postgres_url is None:
        yield None
        return
    db = Database(make_engine(postgres_url))
    upgrade(db)
    yield db
    db.dispose()


def _truncate(db: Database) -> None:
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend a test runs on."""
    return str(request.param)


@pytest.fixture
def db(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty, migrated database on the test's backend."""
    if backend == "sqlite":
        path = tmp_path / "qmsflow.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        database = Database(make_engine(f"sqlite:///{path}"))
        RAN_SUITES.add("sqlite")
        yield database
        database.dispose()
        return
    yield _empty_postgres(request)


def _empty_postgres(request: pytest.FixtureRequest) -> Database:
    pg: Database | None = request.getfixturevalue("postgres_db")
    if pg is None:
        SKIPPED_SUITES["postgresql"] = _POSTGRES.reason
        if REQUIRE_ALL:
            pytest.fail(f"PostgreSQL suite required but unavailable: {_POSTGRES.reason}")
        pytest.skip(_POSTGRES.reason)
    _truncate(pg)
    _store_shipped_calendar(pg)
    RAN_SUITES.add("postgresql")
    return pg


@pytest.fixture
def pg_db(request: pytest.FixtureRequest) -> Database:
    """An empty, migrated PostgreSQL database, for tests about PostgreSQL itself (plans, SKIP LOCKED)."""
    return _empty_postgres(request)


# ----------------------------------------------------------------------------------- the runtime


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The shipped definitions, compiled once."""
    return Registry.from_directory(WORKFLOWS)


@pytest.fixture(scope="session")
def shipped_overrides() -> CalendarOverrides:
    """The calendar overrides shipped in config/."""
    return CalendarOverrides.from_mapping(YAML(typ="safe", pure=True).load(CALENDAR_FILE.read_text("utf-8")))


@pytest.fixture
def clock() -> FixedClock:
    """A clock standing at Monday 5 January 2026, 09:00 in Vietnam; tests move it."""
    return FixedClock(local(date(2026, 1, 5)))


@pytest.fixture
def rt(registry: Registry, shipped_overrides: CalendarOverrides, clock: FixedClock) -> Runtime:
    """The runtime services share, on the test clock."""
    return Runtime(
        registry=registry, calendar=WorkingCalendar(shipped_overrides), clock=clock, history_key=HISTORY_KEY
    )


# ---------------------------------------------------------------------------------- the province


@dataclass
class Province:
    """A small province: units by code and an actor per role."""

    units: dict[str, Unit] = field(default_factory=dict)
    actors: dict[str, Actor] = field(default_factory=dict)


PROVINCE_UNITS = [
    ("91", "UBND tỉnh An Giang", UnitKind.PROVINCE_PC, None, False),
    ("SKHCN", "Sở Khoa học và Công nghệ", UnitKind.DEPARTMENT, "91", True),
    ("SGDDT", "Sở Giáo dục và Đào tạo", UnitKind.DEPARTMENT, "91", False),
    ("SNV", "Sở Nội vụ", UnitKind.DEPARTMENT, "91", False),
    ("30301", "UBND phường Mỹ Thới", UnitKind.COMMUNE_PC, "91", False),
    ("THPT-TNH", "Trường THPT Thoại Ngọc Hầu", UnitKind.HIGH_SCHOOL, "SGDDT", False),
    ("THCS-MT", "Trường THCS Mỹ Thới", UnitKind.LOWER_SECONDARY, "30301", False),
]

PROVINCE_USERS = [
    ("admin", "admin", None),
    ("lead", "lead", "SKHCN"),
    ("gddt", "supervisor", "SGDDT"),
    ("mythoi", "supervisor", "30301"),
    ("tnh", "unit_officer", "THPT-TNH"),
    ("thcs", "unit_officer", "THCS-MT"),
    ("snv", "unit_officer", "SNV"),
    ("viewer", "viewer", None),
]


@pytest.fixture
def province(db: Database, rt: Runtime, clock: FixedClock) -> Province:
    """Units (province PC, lead, supervisors, schools) and one user per role, made through services (as SYSTEM)."""
    p = Province()
    with db.write() as session:
        for code, name, kind, parent, lead in PROVINCE_UNITS:
            p.units[code] = create_unit(
                session, code=code, name=name, kind=kind.value, valid_from=date(2025, 7, 1),
                parent=p.units[parent] if parent else None, is_lead=lead, rt=rt, actor=SYSTEM,
            )
            set_contact(session, p.units[code], "head", f"Head of {code}", email=f"head@{code.lower()}.example", rt=rt, actor=SYSTEM)
            set_contact(session, p.units[code], "iso_officer", f"ISO of {code}", email=f"iso@{code.lower()}.example", rt=rt, actor=SYSTEM)
        for username, role, unit in PROVINCE_USERS:
            user = create_user(
                session, username=username, role=role, unit=p.units[unit] if unit else None,
                email=f"{username}@example.org", now=clock.now(), rt=rt, actor=SYSTEM,
            )
            p.actors[username] = Actor.of(user)
    return p


def rows_through(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table as the given session sees it (its own uncommitted writes included)."""
    return {
        table.name: sorted((tuple(row) for row in session.execute(select(table))), key=repr)
        for table in Base.metadata.sorted_tables
    }


def rows_committed(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read through a second connection."""
    with db.read() as session:
        return rows_through(session)


def assert_loaded_objects_match_their_rows(session: Session) -> None:
    """No ghost: every object the session holds has its row, and each loaded column equals it."""
    for obj in list(session.identity_map.values()):
        table = obj.__table__  # type: ignore[attr-defined]  # every mapped class here is declarative
        pk = {c.name: getattr(obj, c.key) for c in table.primary_key.columns}
        row = session.execute(select(table).filter_by(**pk)).mappings().first()
        assert row is not None, f"{obj!r} is in the session but its row is gone"
        for column in table.columns:
            assert getattr(obj, column.key) == row[column.name], f"{obj!r}.{column.key}"


def allow_another_open_case(session: Session, unit: Unit) -> None:
    """Let ``unit`` take one more open case: its open cases give up their open key, as duplicates from
    before migration 0003 do. For tests that need many open lifecycles on a few units (load, digests).
    """
    session.execute(
        update(Case).where(Case.unit_id == unit.id, Case.closed_at.is_(None), Case.open_key.is_not(None)).values(open_key=None)
    )


# --------------------------------------------------------------------------------- command line


@pytest.fixture
def run(db: Database, tmp_path: Path) -> Callable[..., Result]:
    """Run ``qmsflow ARGS`` (optionally with ``input``) against the test database, with its own instance and evidence folders."""
    env = {
        "QMSFLOW_INSTANCE_PATH": str(tmp_path / "instance"),
        "QMSFLOW_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
        "QMSFLOW_HISTORY_KEY": "cli-test-key",
        "QMSFLOW_EVIDENCE_DIR": str(tmp_path / "evidence"),
    }

    def invoke(*args: str, input: str | None = None) -> Result:
        from qmsflow.cli import main

        return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


# ------------------------------------------------------------------------------------ the summary


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist turns the group into the test's id (--dist loadgroup)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist, keep every PostgreSQL test on one worker and every browser test on one worker.

    The event feed on PostgreSQL holds back rows while any transaction on the server is open (engine/events.py),
    so PostgreSQL tests running beside each other would wait on each other's transactions; the browser
    suite shares one Chromium and one demo province. Other tests spread over the workers one by one.
    """
    pg_fixtures = {"pg_db", "postgres_db", "postgres_url"}
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("backend") == "postgresql" or pg_fixtures & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("postgresql"))
        elif "browser" in item.path.parts:
            item.add_marker(pytest.mark.xdist_group("browser"))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist: gather from a finished worker which suites it ran and which it skipped."""
    output = getattr(node, "workeroutput", {})
    RAN_SUITES.update(output.get("qmsflow_ran", ()))
    SKIPPED_SUITES.update(output.get("qmsflow_skipped", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which suites ran and which did not, so a green run on a bare machine is not mistaken for a full one."""
    terminalreporter.section("suites run")
    terminalreporter.write_line(", ".join(s for s in SUITES if s in RAN_SUITES) or "none")
    if SKIPPED_SUITES:
        terminalreporter.section("suites skipped")
        for suite, reason in SKIPPED_SUITES.items():
            terminalreporter.write_line(f"{suite}: {reason}")
    if REQUIRE_ALL and not set(SUITES) <= RAN_SUITES:
        terminalreporter.write_line(f"required but not run: {', '.join(s for s in SUITES if s not in RAN_SUITES)}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With QMSFLOW_REQUIRE_ALL_SUITES=1 a skipped suite, or one that never ran, fails the run.

    An xdist worker only hands its suites to the controller, which decides.
    """
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["qmsflow_ran"] = sorted(RAN_SUITES)
        output["qmsflow_skipped"] = dict(SKIPPED_SUITES)
        return
    if REQUIRE_ALL and exitstatus == 0 and (SKIPPED_SUITES or not set(SUITES) <= RAN_SUITES):
        session.exitstatus = 1


T = TypeVar("T")


def got(session: Session, model: type[T], ident: Any) -> T:
    """Return ``session.get(model, ident)``, which the test knows exists (typed without the None)."""
    obj = session.get(model, ident)
    assert obj is not None, f"no {model.__name__} {ident!r}"
    return obj
