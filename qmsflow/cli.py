"""The ``qmsflow`` command line: set up, load the demo, manage users, run and inspect cases, audit.

Imports on demand: this module loads only click at import time, so ``qmsflow --help`` starts in a
fraction of the time SQLAlchemy, Alembic and the workflow loader would take (bench/startup.py
measures it). Each command imports what it uses; keep new top-level imports to the standard library.

Every failure ends in one line on stderr and a documented exit code (README.md, "Using it from the
command line"); ``qmsflow --debug ...`` shows the traceback instead.
"""

from __future__ import annotations

import difflib
import getpass
import hashlib
import json
import logging
import os
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from .config import Settings
    from .engine.calendar import WorkingCalendar
    from .engine.clock import Clock
    from .engine.db import Database
    from .engine.errors import QmsflowError
    from .engine.notifications import MailSettings, SmtpMailer
    from .engine.permissions import Actor
    from .engine.registry import Registry
    from .engine.runtime import Runtime
    from .engine.scheduling import SchedulerService

# Exit codes, so scripts can tell refusals apart (by error class name, so this module imports no engine).
EXIT_CODES: dict[str, int] = {
    "ValidationFailed": 2,
    "NotPermitted": 3,
    "NotFound": 4,
    "StaleVersion": 5,
    "InvalidTransition": 6,
    "GuardFailed": 7,
    "Conflict": 8,
    "DefinitionError": 9,
    "ConditionError": 9,
    "ConfigurationError": 10,
    "DatabaseBusy": 11,
    "DatabaseUnavailable": 12,
    "CalendarMismatch": 13,
}
EXIT_AUDIT_FINDINGS = 1
EXIT_INTERNAL = 70  # a bug in qmsflow (BSD sysexits' EX_SOFTWARE)


def exit_code(exc: BaseException) -> int:
    """The documented exit code for an engine error (its nearest class with one), or 1."""
    for kind in type(exc).__mro__:
        if kind.__name__ in EXIT_CODES:
            return EXIT_CODES[kind.__name__]
    return 1


@dataclass
class App:
    """What every command needs, each part built on first use: settings, database, definitions, runtime."""

    clock: Clock | None = None
    debug: bool = False
    language: str = "en"  # what the command line prints in: --language / QMSFLOW_CLI_LANGUAGE (README.md)
    application_name: str = "qmsflow-cli"
    _settings: Settings | None = None
    _db: Database | None = None
    _rt: Runtime | None = None
    _registry: Registry | None = None
    _calendar: WorkingCalendar | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from .config import load_settings

            self._settings = load_settings()
        return self._settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        self._settings = value

    def now_clock(self) -> Clock:
        if self.clock is None:
            from .engine.clock import SystemClock

            self.clock = SystemClock()
        return self.clock

    @property
    def db(self) -> Database:
        """The database, refused unless it exists and has the current schema (``init`` and ``demo`` create it)."""
        if self._db is None:
            from . import bootstrap

            db = bootstrap.open_database(self.settings, self.application_name, must_exist=True)
            bootstrap.check_schema(db)
            self._db = db
        return self._db

    def create_db(self) -> Database:
        """Open the database, creating an empty SQLite file if there is none (``init``, ``demo``)."""
        if self._db is None:
            from . import bootstrap

            self._db = bootstrap.open_database(self.settings, self.application_name)
        return self._db

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from . import bootstrap

            self._registry = self._rt.registry if self._rt else bootstrap.build_registry(self.settings)
        return self._registry

    @property
    def calendar(self) -> WorkingCalendar:
        if self._calendar is None:
            from . import bootstrap

            self._calendar = self._rt.calendar if self._rt else bootstrap.build_calendar(self.settings)
        return self._calendar

    @property
    def rt(self) -> Runtime:
        if self._rt is None:
            from . import bootstrap

            self._rt = bootstrap.build_runtime(
                self.settings, self.now_clock(), registry=self._registry, calendar=self._calendar
            )
        return self._rt


def _language() -> str:
    """The language of this command's output: the root App's, English outside a command."""
    ctx = click.get_current_context(silent=True)
    app = ctx.find_root().obj if ctx is not None else None
    return app.language if isinstance(app, App) else "en"


def _say(key: str, **values: Any) -> str:
    """Return the command-line sentence ``key`` (``language.CLI``) in the command's language."""
    from .engine.language import CLI, render

    return render(_language(), CLI[key], values)


def fail(exc: QmsflowError) -> NoReturn:
    """Print an engine error the way an operator can act on, in the command's language, and exit with its code."""
    from .engine.language import describe

    click.echo(_say("error", message=describe(exc, _language())), err=True)
    sys.exit(exit_code(exc))


def _operator() -> Actor:
    """Who runs an administrative command that has no --as: the operating-system account, for the admin log."""
    from .engine.definitions import Role
    from .engine.permissions import Actor

    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        name = "unknown"
    return Actor(username=f"cli:{name}"[:64], role=Role.ADMIN)


@contextmanager
def engine_errors() -> Iterator[None]:
    """Turn engine errors into messages and exit codes instead of tracebacks (the root group does it too)."""
    from .engine.errors import QmsflowError

    try:
        yield
    except QmsflowError as exc:
        fail(exc)


def _report(exc: Exception, app: App | None) -> NoReturn:
    """End a command that raised: a typed error with its code, anything else as one line, never a traceback."""
    import sqlite3

    from sqlalchemy.exc import DBAPIError

    from .engine.db import translate_error
    from .engine.errors import QmsflowError

    if isinstance(exc, QmsflowError):
        fail(exc)
    if isinstance(exc, DBAPIError | sqlite3.Error):
        url = app._db.safe_url if app and app._db else "(the configured database)"
        translated = translate_error(exc, url)
        if translated is not None:
            fail(translated)
        detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        click.echo(f"error: unexpected database error: {detail}; run again with --debug and report it", err=True)
        sys.exit(EXIT_INTERNAL)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        click.echo(f"error: {exc.strerror or exc}{where}", err=True)
        sys.exit(EXIT_CODES["ConfigurationError"])
    click.echo(
        f"internal error: {type(exc).__name__}: {exc}. This is a bug in qmsflow: run the command again with "
        "`qmsflow --debug ...` and report the traceback",
        err=True,
    )
    sys.exit(EXIT_INTERNAL)


class _Main(click.Group):
    """The root group: every exception a command raises ends here, as a message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            app = ctx.obj if isinstance(ctx.obj, App) else None
            if ctx.params.get("debug"):
                raise
            _report(exc, app)


@click.group(cls=_Main)
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error instead of a one-line message.")
@click.option(
    "--language", type=click.Choice(["en", "vi"]), default="en", envvar="QMSFLOW_CLI_LANGUAGE", show_envvar=True,
    show_default=True, help="Language of messages, errors and labels (vi: tiếng Việt).",
)
@click.pass_context
def main(ctx: click.Context, debug: bool, language: str) -> None:
    """qmsflow: ISO 9001 quality management lifecycles for Vietnamese public bodies."""
    ctx.obj = App(debug=debug, language=language)


def _app(ctx: click.Context) -> App:
    app: App = ctx.find_root().obj
    return app


def _initialise(app: App, *, from_file: bool = False) -> None:
    from . import bootstrap
    from .config import ensure_instance

    app.settings = ensure_instance(app.settings)
    bootstrap.upgrade(app.create_db())
    _register_history_keys(app)
    _apply_calendar_file(app, from_file=from_file)


def _register_history_keys(app: App) -> None:
    """Record new keys' check values; refuse to start with a key that is not the one recorded."""
    from .engine.keys import register_keys

    with app.db.write() as session:
        register_keys(session, app.rt.keyring, app.now_clock().now())


def _apply_calendar_file(app: App, *, from_file: bool) -> None:
    """``init``: seed the stored calendar from the calendar file on a new database; else apply it only ``from_file``.

    After the first ``init`` the stored days are the source (an administrator edits them on
    /admin/calendar): a calendar file that differs is applied only when asked for, or ``init`` would
    undo those edits. A scheduler or web process whose calendar differs from the stored one refuses to
    plan and fire deadlines instead (docs/operations.md, "Changing the calendar").
    """
    from .engine import calendar_store
    from .engine.permissions import SYSTEM

    db = app.create_db()
    with db.write() as session:
        seeded = calendar_store.seed(session, app.rt.calendar, app.rt.history_key, SYSTEM, app.now_clock().now())
    if seeded:
        return
    on_stored = _stored_runtime(app, db)
    target = app.rt if from_file else on_stored
    with db.read() as session:
        current = calendar_store.stored(session).refusal(target.calendar, planning=False) is None
    if not current:  # the file asked for, or the stored days on another holidays version (an upgrade), or a replan cut short
        click.echo(f"applying the calendar file {app.settings.calendar_file}" if from_file else "re-planning on the stored calendar")
        _replan(app, db, SYSTEM, verbose=False, rt=target)
    if not from_file and app.rt.calendar.fingerprint() != on_stored.calendar.fingerprint():
        click.echo(
            f"the calendar file {app.settings.calendar_file} differs from the stored calendar, which is kept: "
            "apply the file with `qmsflow calendar replan --from-file`"
        )


def _stored_runtime(app: App, db: Database) -> Runtime:
    """The runtime on the stored calendar's days (the source after the first ``init``)."""
    from dataclasses import replace

    from .engine import calendar_store
    from .engine.calendar import WorkingCalendar

    with db.read() as session:
        overrides = calendar_store.load_overrides(session)
    return replace(app.rt, calendar=WorkingCalendar(overrides))


def _replan(app: App, db: Database, actor: Actor, *, verbose: bool, rt: Runtime | None = None) -> None:
    from .engine.replanning import MovedDeadline, replan_calendar

    def progress(moved: list[MovedDeadline]) -> None:
        for m in moved if verbose else ():
            click.echo(f"timer {m.timer_id} ({m.name}, case #{m.case_id}): {m.old_due} -> {m.new_due}")

    report = replan_calendar(
        db, rt or app.rt, actor=actor, batch_size=app.settings.scheduler.replan_batch_size, on_batch=progress
    )
    click.echo(f"{len(report.moved)} pending deadlines re-planned in {report.batches} batches")
    if not report.applied:
        click.echo("another calendar replan began meanwhile: its calendar is the one applied when it ends")


def _warn_if_calendar_differs(app: App) -> None:
    """At a scheduler's or web process's start: say at once when it will refuse to plan and fire deadlines."""
    from .engine import calendar_store

    with app.db.read() as session:
        refusal = calendar_store.stored(session).refusal(app.rt.calendar, planning=False)
    if refusal is not None:  # said here on stderr; the sweep logs it (once) at ERROR
        click.echo(f"warning: {refusal}; until then this process fires and plans no deadline", err=True)


@main.command()
@click.option("--from-file", "from_file", is_flag=True, help="Apply the calendar file even if the stored calendar differs.")
@click.pass_context
def init(ctx: click.Context, from_file: bool) -> None:
    """Create or upgrade the database schema (safe to run again); generate missing secrets."""
    app = _app(ctx)
    _initialise(app, from_file=from_file)
    click.echo(f"database ready: {app.create_db().safe_url}")


@main.command()
@click.option(
    "--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]),
    help="Build the demo as if loaded on this day (default: today); its story ends the week before.",
)
@click.pass_context
def demo(ctx: click.Context, as_of: datetime | None) -> None:
    """Initialise and load the demo province (only into an empty database), shifted to end near today."""
    from .demo import DEMO_PASSWORD, USERS, build_demo, catch_up, has_data
    from .engine.clock import local_date

    app = _app(ctx)
    click.echo("creating or upgrading the schema ...")
    _initialise(app)
    load_day = as_of.date() if as_of else local_date(app.now_clock().now())
    with app.create_db().write() as session:
        if has_data(session):
            click.echo("the database already has units; demo not loaded again")
            return
        click.echo(f"loading the demo province as of {load_day} ...")
        counts = build_demo(session, app.rt, load_day=load_day, log=lambda m: click.echo(f"  {m}"))
    fired = catch_up(app.create_db(), app.rt, _mail_settings(app.settings), load_day if as_of else None, log=lambda m: click.echo(f"  {m}"))
    click.echo(
        f"demo loaded: {counts['units']} units, {counts['users']} users, {counts['cases']} cases "
        f"({fired} overdue steps fired up to {load_day})"
    )
    click.echo(f"demo users, each with the password {DEMO_PASSWORD!r} (sign in at /sign-in once `qmsflow serve` runs):")
    for username, full_name, role, _unit in USERS:
        click.echo(f"  {username:<15} {role:<13} {full_name}")


# ------------------------------------------------------------------------------------------ users


@main.group()
def users() -> None:
    """Manage users."""


@users.command("create")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["admin", "lead", "supervisor", "unit_officer", "viewer"]))
@click.option("--unit", "unit_code", help="Official code of the user's unit (required for supervisor, unit_officer).")
@click.option("--email")
@click.option("--full-name", default="")
@click.option("--password-stdin", is_flag=True, help="Read a password (10+ characters) from standard input.")
@click.option("--as", "as_user", help="Act as this user (must administer users); default: the console operator.")
@click.pass_context
def users_create(
    ctx: click.Context, username: str, role: str, unit_code: str | None, email: str | None, full_name: str, password_stdin: bool,
    as_user: str | None,
) -> None:
    """Create a user with a role, scoped to a unit where the role needs one."""
    from .engine.clock import local_date
    from .engine.permissions import CONSOLE, AdminArea, require_admin
    from .engine.units import unit_by_code
    from .engine.users import create_user

    app = _app(ctx)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    with engine_errors(), app.db.write() as session:
        require_admin(_actor(session, as_user) if as_user else CONSOLE, AdminArea.USERS)
        now = app.now_clock().now()
        unit = unit_by_code(session, unit_code, local_date(now)) if unit_code else None
        user = create_user(
            session, username=username, role=role, unit=unit, email=email, full_name=full_name, password=password, now=now,
            rt=app.rt, actor=_operator(),
        )
        click.echo(_say("created_user", username=user.username, role=user.role, unit=f", {unit.name}" if unit else ""))


@users.command("set-password")
@click.argument("username")
@click.pass_context
def users_set_password(ctx: click.Context, username: str) -> None:
    """Set USERNAME's password, read from standard input (asked twice at a terminal); ends their web sessions."""
    from .engine.permissions import CONSOLE, require_admin
    from .engine.users import set_password, user_by_name

    app = _app(ctx)
    if sys.stdin.isatty():
        password = click.prompt("new password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    with engine_errors(), app.db.write() as session:
        require_admin(CONSOLE, "users")
        set_password(session, user_by_name(session, username), password, now=app.now_clock().now(), rt=app.rt, actor=_operator())
    click.echo(f"password set for {username}; their web sessions have ended")


@users.command("unlock")
@click.argument("username")
@click.pass_context
def users_unlock(ctx: click.Context, username: str) -> None:
    """Lift the sign-in lock that failed attempts put on USERNAME."""
    from .engine.signin import unlock

    app = _app(ctx)
    with engine_errors(), app.db.write() as session:
        was_locked = unlock(session, app.rt, _operator(), username)
    click.echo(f"{username}: {'unlocked' if was_locked else 'was not locked'}")


@users.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """List users."""
    from sqlalchemy import select

    from .engine.models import User

    app = _app(ctx)
    with app.db.read() as session:
        for user in session.scalars(select(User).order_by(User.username)):
            unit = user.unit.code if user.unit else "-"
            click.echo(f"{user.username:<16} {user.role:<13} {unit:<10} {user.full_name}")


# ------------------------------------------------------------------------------------------ units


@main.group("units")
def units_group() -> None:
    """Import and export the register of units (docs/registry.md)."""


def _print_row_problems(rows: Any) -> None:
    for problem in rows:
        click.echo(problem.render(_language()), err=True)
    click.echo(_say("import_refused", count=len(rows)), err=True)


def _print_changes(plan: Any) -> None:
    for change in plan.changes:
        detail = "; ".join(f"{column}: {old!r} -> {new!r}" for column, old, new in change.changes)
        click.echo(f"  {change.sheet} row {change.row} {change.key}: {change.action}" + (f" ({detail})" if detail else ""))


@units_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--users", "users_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A users file (CSV or XLSX) to import with the units; needs an administrator.")
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]), help="The day the rows describe (default: today).")
@click.option("--dry-run", is_flag=True, help="Check and list what would change; write nothing.")
@click.option("--as", "as_user", required=True, help="Act as this user (an admin, or a lead for units only).")
@click.pass_context
def units_import(
    ctx: click.Context, file: Path, users_file: Path | None, as_of: datetime | None, dry_run: bool, as_user: str
) -> None:
    """Import units (and, with --users, accounts) from FILE: every bad row is listed and nothing is written, or all is."""
    from .engine.clock import local_date
    from .engine.errors import ImportRefused
    from .engine.unitimport import apply_import, plan_import

    app = _app(ctx)
    day = as_of.date() if as_of else local_date(app.now_clock().now())
    units_data = file.read_bytes()
    users_data = users_file.read_bytes() if users_file else None
    with engine_errors():
        if dry_run:
            with app.db.read() as session:
                plan = plan_import(session, _actor(session, as_user), units_data, users_data=users_data, as_of=day)
            if not plan.ok:
                _print_row_problems(plan.problems)
                sys.exit(EXIT_CODES["ValidationFailed"])
            _print_changes(plan)
            click.echo(_say("import_plan", **plan.counts()))
            click.echo(_say("import_dry_run"))
            return
        try:
            with app.db.write() as session:
                result = apply_import(session, app.rt, _actor(session, as_user), units_data, users_data=users_data, as_of=day)
        except ImportRefused as refused:
            _print_row_problems(refused.rows)
            sys.exit(EXIT_CODES["ValidationFailed"])
    _print_changes(result.plan)
    click.echo(_say("import_done", **result.plan.counts()))
    if result.passwords:
        click.echo(_say("one_time_passwords"))
        for username, password in result.passwords:
            click.echo(f"  {username:<24} {password}")


@units_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default="csv", show_default=True)
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]), help="The day the rows describe (default: today).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the units here (default: standard output, CSV only).")
@click.option("--users", "users_output", type=click.Path(dir_okay=False, path_type=Path), help="Also write the users file here.")
@click.pass_context
def units_export(ctx: click.Context, fmt: str, as_of: datetime | None, output: Path | None, users_output: Path | None) -> None:
    """Write the units valid on a day (and, with --users, the active users) in the layout `units import` reads."""
    from .engine.clock import local_date
    from .engine.unitimport import export_units, export_users

    if fmt == "xlsx" and output is None:
        raise click.UsageError("--format xlsx needs -o FILE (an XLSX file is not text for a terminal)")
    app = _app(ctx)
    day = as_of.date() if as_of else local_date(app.now_clock().now())
    with engine_errors(), app.db.read() as session:
        units_data = export_units(session, as_of=day, fmt=fmt)
        users_data = export_users(session, as_of=day, fmt=fmt) if users_output else None
    if output is None:
        click.echo(units_data, nl=False)
    else:
        output.write_bytes(units_data)
    if users_output is not None and users_data is not None:
        users_output.write_bytes(users_data)
# ----------------------------------------------------------------------------------------- tokens


@main.group()
def tokens() -> None:
    """Manage JSON API bearer tokens (docs/api.md)."""


def _parse_expiry(value: str | None) -> datetime | None:
    """A day (YYYY-MM-DD: the token works until the end of that local day) or an instant with an offset."""
    from datetime import date as date_cls
    from datetime import time as time_cls
    from datetime import timedelta as td

    from .engine.clock import LOCAL_TZ

    if value is None:
        return None
    try:
        day = date_cls.fromisoformat(value)
    except ValueError:
        return _parse_instant(value)
    return datetime.combine(day + td(days=1), time_cls(0), tzinfo=LOCAL_TZ)


@tokens.command("create")
@click.argument("username")
@click.option("--expires", help="Last day the token works (YYYY-MM-DD), or an instant with offset; default: never.")
@click.option("--name", default="", help="What the token is for (e.g. the system that uses it).")
@click.pass_context
def tokens_create(ctx: click.Context, username: str, expires: str | None, name: str) -> None:
    """Make a token for USERNAME and print it once (only its hash is stored)."""
    from .engine.tokens import create_token
    from .engine.users import user_by_name

    app = _app(ctx)
    expires_at = _parse_expiry(expires)
    with engine_errors(), app.db.write() as session:
        token, secret = create_token(session, app.rt, _operator(), user_by_name(session, username), name=name, expires_at=expires_at)
        token_id = token.id
    click.echo(secret)
    click.echo(f"token {token_id} for {username}: shown once, store it now", err=True)


@tokens.command("list")
@click.option("--user", "username", help="Only this user's tokens.")
@click.pass_context
def tokens_list(ctx: click.Context, username: str | None) -> None:
    """List tokens: id, prefix, user, name, expiry, last use, and whether revoked."""
    from .engine.tokens import list_tokens
    from .engine.users import user_by_name

    app = _app(ctx)
    with engine_errors(), app.db.read() as session:
        user_id = user_by_name(session, username).id if username else None
        for token, owner in list_tokens(session, _operator(), user_id=user_id):
            status = "revoked" if token.revoked_at else "active"
            click.echo(
                f"{token.id:<5} {token.prefix:<13} {owner:<16} {status:<8} expires={_local(token.expires_at) if token.expires_at else '-'} "
                f"last_used={_local(token.last_used_at) if token.last_used_at else '-'} {token.name}"
            )


@tokens.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
def tokens_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke token TOKEN_ID now: every request with it is refused from then on."""
    from .engine.tokens import revoke_token

    app = _app(ctx)
    with engine_errors(), app.db.write() as session:
        was_active = revoke_token(session, app.rt, _operator(), token_id)
    click.echo(f"token {token_id}: {'revoked' if was_active else 'was already revoked'}")


# -------------------------------------------------------------------------------------- workflows


@main.group()
def workflows() -> None:
    """Check and list workflow definitions."""


@workflows.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def workflows_validate(paths: tuple[Path, ...]) -> None:
    """Check definition files (or folders of them); list every problem and exit non-zero if any."""
    from .engine.definitions import load_definition
    from .engine.errors import DefinitionError

    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    if not files:
        click.echo(f"error: no definition files (*.yaml) in {', '.join(str(p) for p in paths)}", err=True)
        sys.exit(EXIT_CODES["ValidationFailed"])
    bad = 0
    for file in files:
        try:
            definition = load_definition(file)
        except DefinitionError as exc:
            bad += 1
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            continue
        click.echo(f"{file}: ok ({definition.name} v{definition.version})")
    if bad:
        click.echo(f"{bad} of {len(files)} files invalid", err=True)
        sys.exit(EXIT_CODES["DefinitionError"])


@workflows.command("list")
@click.pass_context
def workflows_list(ctx: click.Context) -> None:
    """List the loaded definitions with their states and events."""
    app = _app(ctx)
    with engine_errors():
        for d in app.registry.definitions():
            click.echo(f"{d.name} v{d.version}  {d.spec.label.get(app.language)}")
            click.echo(f"  states: {', '.join(d.spec.states)}")
            click.echo(f"  events: {', '.join(d.spec.events)}")
            if d.spec.obligations:
                click.echo(f"  obligations: {', '.join(d.spec.obligations)}")


# ------------------------------------------------------------------------------------------ cases


def _actor(session: Any, username: str) -> Actor:
    from .engine.permissions import Actor
    from .engine.users import user_by_name

    return Actor.of(user_by_name(session, username))


def _parse_data(items: tuple[str, ...]) -> dict[str, Any]:
    from .engine.errors import FieldProblem, ValidationFailed

    data: dict[str, Any] = {}
    for item in items:
        if item.startswith("{"):
            try:
                loaded = json.loads(item)
            except json.JSONDecodeError as exc:
                raise ValidationFailed([FieldProblem("--data", "invalid_json", {"detail": exc.msg})]) from None
            if not isinstance(loaded, dict):
                raise ValidationFailed([FieldProblem("--data", "json_not_object")])
            data.update(loaded)
        elif "=" in item:
            key, value = item.split("=", 1)
            data[key.strip()] = value
        else:
            raise ValidationFailed([FieldProblem("--data", "data_item", {"item": repr(item)})])
    return data


def _local(at: Any) -> str:
    from .engine.clock import LOCAL_TZ

    return at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M") if at else "-"


@main.group("cases")
def cases_group() -> None:
    """Open, list, show and advance cases."""


def _check_filters(registry: Registry, workflow: str | None, state: str | None) -> None:
    """Refuse a workflow or state filter that no loaded definition has, instead of listing nothing."""
    from .engine.errors import FieldProblem, ValidationFailed

    definitions = [d for d in registry.definitions() if workflow in (None, d.name)]
    if workflow and not definitions:
        known = sorted({d.name for d in registry.definitions()})
        raise ValidationFailed([FieldProblem("--workflow", "no_workflow", {"value": repr(workflow), "known": ", ".join(known)})])
    states = sorted({s for d in definitions for s in d.spec.states})
    if state and state not in states:
        raise ValidationFailed([FieldProblem("--state", "no_state", {"value": f"{state!r}{_closest(state, states)}", "known": ", ".join(states)})])


def _closest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


@cases_group.command("list")
@click.option("--as", "as_user", required=True, help="Act as this user (scope applies).")
@click.option("--workflow")
@click.option("--state")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cases_list(ctx: click.Context, as_user: str, workflow: str | None, state: str | None, as_json: bool) -> None:
    """List the cases a user may see."""
    from sqlalchemy import select

    from .engine import cases
    from .engine.models import Unit

    app = _app(ctx)
    _check_filters(app.registry, workflow, state)
    with engine_errors(), app.db.read() as session:
        actor = _actor(session, as_user)
        rows = cases.list_cases(session, app.rt, actor, workflow=workflow, state=state)
        units = {u.id: u for u in session.scalars(select(Unit).where(Unit.id.in_({c.unit_id for c in rows})))}
        if as_json:
            click.echo(json.dumps([
                {"id": c.id, "unit": units[c.unit_id].code, "workflow": c.workflow, "version": c.version, "state": c.state}
                for c in rows
            ], ensure_ascii=False))
            return
        for c in rows:
            label = app.rt.registry.get(c.workflow, c.workflow_version).spec.states[c.state].label.get(app.language)
            click.echo(f"#{c.id:<5} {units[c.unit_id].code:<9} {c.workflow:<18} v{c.version:<3} {c.state:<13} {label}")


@cases_group.command("show")
@click.argument("case_id", type=click.IntRange(min=1))
@click.option("--as", "as_user", required=True)
@click.pass_context
def cases_show(ctx: click.Context, case_id: int, as_user: str) -> None:
    """Show a case: state, data, allowed events, timers, obligations and history."""
    from .engine import cases
    from .engine.actions import allowed_events
    from .engine.deadlines import case_deadlines
    from .engine.timeline import case_timeline

    app = _app(ctx)
    lang = app.language
    with engine_errors(), app.db.read() as session:
        actor = _actor(session, as_user)
        case = cases.get_case(session, app.rt, actor, case_id)
        definition = app.rt.registry.get(case.workflow, case.workflow_version)
        click.echo(_say("show_case", id=case.id, unit=case.unit.name, code=case.unit.code))
        click.echo(_say("show_workflow", workflow=case.workflow, version=case.workflow_version, case_version=case.version))
        click.echo(_say("show_state", state=case.state, label=definition.spec.states[case.state].label.get(lang)))
        if case.data:
            click.echo(_say("show_data"))
            for k, v in sorted(case.data.items()):
                click.echo(f"  {k} = {v}")
        allowed = [
            a.event if a.enabled else _say("not_yet", event=a.event, reason=a.reason)
            for a in allowed_events(session, app.rt, actor, case, language=lang)
        ]
        click.echo(_say("show_events", events=", ".join(allowed) or "-"))
        for t in case_deadlines(session, app.rt, actor, case, language=lang):
            click.echo(_say(
                "show_timer", name=f"{t.name:<24}", due=t.due_date, passes=_local(t.due_at), next=_local(t.next_at),
                days=t.working_days_left, late=_say("late") if t.late else "",
            ))
        for ob in cases.open_obligations(session, case):
            click.echo(_say("show_obligation", name=ob.name, cycle=ob.cycle, since=_local(ob.opened_at)))
        click.echo(_say("show_history"))
        for h in case_timeline(session, app.rt, actor, case.id, language=lang):
            move = f"{h.from_state or ''} -> {h.to_state}" if h.to_state else ""
            click.echo(f"  {h.seq:>3} {_local(h.at)} {h.actor_name:<14} {h.kind:<20} {h.event or '':<24} {move}")


@cases_group.command("open")
@click.argument("unit_code")
@click.argument("workflow")
@click.option("--as", "as_user", required=True)
@click.option("--data", "data_items", multiple=True, help="key=value or a JSON object; repeatable.")
@click.pass_context
def cases_open(ctx: click.Context, unit_code: str, workflow: str, as_user: str, data_items: tuple[str, ...]) -> None:
    """Open a case of WORKFLOW for the unit with UNIT_CODE."""
    from .engine import cases
    from .engine.clock import local_date
    from .engine.units import unit_by_code

    app = _app(ctx)
    with engine_errors(), app.db.write() as session:
        actor = _actor(session, as_user)
        unit = unit_by_code(session, unit_code, local_date(app.now_clock().now()))
        case = cases.open_case(session, app.rt, actor, unit, workflow, _parse_data(data_items))
        click.echo(_say("opened", id=case.id, workflow=case.workflow, state=case.state))


@cases_group.command("advance")
@click.argument("case_id", type=click.IntRange(min=1))
@click.argument("event")
@click.option("--as", "as_user", required=True)
@click.option("--data", "data_items", multiple=True, help="key=value or a JSON object; repeatable.")
@click.option("--expect-version", type=click.IntRange(min=1), help="Refuse if the case has moved on since you read it.")
@click.option("--evidence", "evidence_ids", multiple=True, type=click.IntRange(min=1), help="Attach your staged upload with this id; repeatable.")
@click.pass_context
def cases_advance(
    ctx: click.Context, case_id: int, event: str, as_user: str, data_items: tuple[str, ...], expect_version: int | None,
    evidence_ids: tuple[int, ...],
) -> None:
    """Fire EVENT on case CASE_ID as a user."""
    from .engine import cases
    from .engine.errors import InvalidTransition

    app = _app(ctx)
    with engine_errors(), app.db.write() as session:
        actor = _actor(session, as_user)
        try:
            result = cases.advance(
                session, app.rt, actor, case_id, event, _parse_data(data_items), expected_version=expect_version,
                evidence=evidence_ids,
            )
        except InvalidTransition as exc:
            raise _unknown_event(session, app, exc) from None
        click.echo(_say(
            "advanced", id=case_id, event=result.event, from_state=result.from_state, to_state=result.to_state,
            version=result.case.version,
        ))


def _unknown_event(session: Any, app: App, exc: Any) -> Any:
    """An InvalidTransition for an event the case's workflow does not have says so, with the closest names."""
    from .engine.errors import InvalidTransition
    from .engine.models import Case

    case = session.get(Case, exc.case_id)
    if case is None:
        return exc
    events = sorted(app.rt.registry.get(case.workflow, case.workflow_version).spec.events)
    if exc.event in events:
        return exc
    better = InvalidTransition(exc.case_id, exc.state, exc.event)
    better.args = (
        f"case {exc.case_id} ({case.workflow}) has no event {exc.event!r}{_closest(exc.event, events)}; "
        f"`qmsflow cases show {exc.case_id} --as USER` lists the events you may fire",
    )
    return better


# --------------------------------------------------------------------------------------- evidence


@main.group("evidence")
def evidence_group() -> None:
    """Upload and download evidence files."""


@evidence_group.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "as_user", required=True)
@click.pass_context
def evidence_upload(ctx: click.Context, file: Path, as_user: str) -> None:
    """Stage FILE (PDF, JPEG or PNG) as USER's upload and print its id, to attach with --evidence."""
    from . import bootstrap
    from .engine import evidence

    app = _app(ctx)
    with engine_errors():
        store = bootstrap.evidence_store(app.settings)
        with app.db.write() as session, file.open("rb") as content:
            upload = evidence.stage(session, store, _actor(session, as_user), file.name, content, app.now_clock().now())
            click.echo(upload.id)


@evidence_group.command("get")
@click.argument("attachment_id", type=int)
@click.option("--as", "as_user", required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Where to write the file.")
@click.pass_context
def evidence_get(ctx: click.Context, attachment_id: int, as_user: str, output: Path) -> None:
    """Write attachment ATTACHMENT_ID of a case USER may see to OUTPUT, checking its hash on the way."""
    import tempfile

    from . import bootstrap
    from .engine import evidence
    from .engine.errors import Conflict

    app = _app(ctx)
    with engine_errors():
        store = bootstrap.evidence_store(app.settings)
        with app.db.read() as session:
            upload, source = evidence.open_attachment(session, store, _actor(session, as_user), attachment_id, app.now_clock().now())
            sha, described = upload.sha256, f"{upload.name} ({upload.content_type}, {upload.size} bytes)"
        fd, tmp = tempfile.mkstemp(dir=output.resolve().parent, prefix=f".{output.name}.")
        try:
            digest = hashlib.sha256()
            with source, os.fdopen(fd, "wb") as out:
                while chunk := source.read(1 << 16):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha:
                raise Conflict(f"the stored file of attachment {attachment_id} was altered; run qmsflow audit verify")
            os.replace(tmp, output)
        finally:
            Path(tmp).unlink(missing_ok=True)
    click.echo(f"{output}: {described}")


# ---------------------------------------------------------------------------------- reorganize


@main.group()
def reorganize() -> None:
    """Reorganise units on a date from a mapping file (docs/registry.md)."""


@reorganize.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "as_user", required=True, help="The lead officer or administrator who applies it.")
@click.option("--dry-run", is_flag=True, help="Print what each operation would do and change nothing.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, writable=True, path_type=Path), help="Write the reconciliation as CSV.")
@click.pass_context
def reorganize_apply(ctx: click.Context, file: Path, as_user: str, dry_run: bool, report_path: Path | None) -> None:
    """Apply the operations of FILE in one transaction; refuse the whole file listing every problem."""
    import csv

    from .engine import reorganize as reorg

    app = _app(ctx)
    try:
        text = file.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {file}: {exc}") from None
    with engine_errors(), app.db.write() as session:
        actor = _actor(session, as_user)
        report = reorg.apply(session, app.rt, actor, reorg.load_mapping(text), dry_run=dry_run)
    for op in report.operations:
        click.echo(f"{op.key} ({op.op}, {op.effective}): {op.status}")
        for line in op.lines:
            click.echo(f"  {line}")
    click.echo("reconciliation:")
    for s in report.successors:
        click.echo(f"  {s.code} {s.name}: cases {' '.join(map(str, s.cases)) or '-'}; {s.obligations} obligations, {s.corrective_actions} corrective actions")
    for username, code in report.users_on_ended_units:
        click.echo(f"  user {username} is left on ended unit {code}")
    for code, role, name in report.contacts_on_ended_units:
        click.echo(f"  contact {role} {name} is left on ended unit {code}")
    for s in report.without_contacts:
        click.echo(f"  {s.code} {s.name} has no head or no ISO officer: escalations to unit_head would reach nobody")
    if report_path is not None:
        with report_path.open("w", encoding="utf-8", newline="") as out:
            csv.writer(out).writerows(report.csv_rows())
    applied = sum(op.status == "applied" for op in report.operations)
    verb = "would apply" if dry_run else "applied"
    click.echo(f"{verb} {applied} operations, {len(report.operations) - applied} unchanged" + (" (dry run: nothing changed)" if dry_run else ""))


@reorganize.command("convert")
@click.option("--units", "units_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The units before the reorganisation (the official JSON of qmsflow/data/).")
@click.option("--mapping", "mapping_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The official old-to-new commune mapping (JSON).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, writable=True, path_type=Path))
def reorganize_convert(units_path: Path, mapping_path: Path, output: Path) -> None:
    """Convert the official data into a mapping file, reporting every trap found in it by name and code."""
    from .engine.reorgconvert import convert_files

    try:
        conversion = convert_files(units_path, mapping_path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise click.BadParameter(f"not the official data layout: {type(exc).__name__}: {exc}") from None
    output.write_text(conversion.yaml, encoding="utf-8")
    for trap in conversion.traps:
        click.echo(str(trap))
    click.echo(f"wrote {conversion.operations} operations to {output}; {len(conversion.traps)} traps reported above")


# ------------------------------------------------------------------------------------------ audit


@main.group()
def audit() -> None:
    """Check the tamper-evident history."""


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Verify every case's history chain, the evidence files and the admin log with the key; exit 1 on any finding."""
    from . import bootstrap
    from .engine import adminlog, evidence, history

    app = _app(ctx)
    with engine_errors(), app.db.read() as session:
        checked, rows, findings = history.verify_all(session, app.rt.keyring)
        files, file_findings = evidence.verify_files(session, bootstrap.evidence_store(app.settings))
        logged, log_findings = adminlog.verify(session, app.rt.keyring)
    problems = [str(f) for f in (*findings, *file_findings, *log_findings)]
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        click.echo(f"{len(problems)} problems in {checked} cases ({rows} rows, {files} evidence files, {logged} admin log rows)", err=True)
        sys.exit(1)
    click.echo(f"ok: {checked} cases, {rows} history rows, {files} evidence files, {logged} admin log rows verified")


@audit.command("rotate-key")
@click.pass_context
def audit_rotate_key(ctx: click.Context) -> None:
    """Generate a new current history key into the instance file and retire the old one, recorded."""
    from .config import write_keyring
    from .engine.errors import ConfigurationError
    from .engine.keys import HistoryKey, rotate

    app = _app(ctx)
    overridden = [n for n in ("QMSFLOW_HISTORY_KEY", "QMSFLOW_HISTORY_KEY_ID", "QMSFLOW_HISTORY_RETIRED_KEYS") if n in os.environ]
    with engine_errors():
        if overridden:
            raise ConfigurationError(
                f"{', '.join(overridden)} set in the environment would override the rotated keyring in "
                f"{app.settings.instance_path / 'qmsflow.toml'}: unset them, rotate, then set them from the file"
            )
        old = app.rt.keyring
        now = app.now_clock().now()
        new = old.rotated(HistoryKey(old.next_key_id(), secrets.token_hex(32).encode("utf-8")), now)
        # The file first: if recording fails, the next `qmsflow init` records the keyring the file holds;
        # the other way round a crash would retire the old key in the database and lose the new one.
        app.settings = write_keyring(app.settings, new)
        with app.db.write() as session:
            rotate(session, old, now, new.current.secret)
    click.echo(
        f"history key {new.current.key_id!r} now signs new rows; key {old.current.key_id!r} retired at "
        f"{now.isoformat()} (verifies earlier rows only). Restart every qmsflow process."
    )


# --------------------------------------------------------------------------------------- calendar


@main.group()
def calendar() -> None:
    """The working calendar."""


@calendar.command("show")
@click.argument("year", type=click.IntRange(1900, 2199))
@click.pass_context
def calendar_show(ctx: click.Context, year: int) -> None:
    """List the weekdays off and the make-up working days of YEAR (1900 to 2199)."""
    app = _app(ctx)
    cal = app.calendar
    with engine_errors():
        for day, reason in cal.days_off_between(date(year, 1, 1), date(year, 12, 31)):
            if reason != "weekend":
                click.echo(f"{day} {day.strftime('%a')} off      {reason}")
        for day, name in sorted(cal.overrides.working_days.items()):
            if day.year == year:
                click.echo(f"{day} {day.strftime('%a')} working  {name}")


@calendar.command("replan")
@click.option("--from-file", "from_file", is_flag=True, help="Apply the calendar file's days instead of the stored ones.")
@click.pass_context
def calendar_replan(ctx: click.Context, from_file: bool) -> None:
    """Re-plan pending timers on the stored calendar, in batches (resumes if cut short); --from-file applies the file."""
    app = _app(ctx)
    with engine_errors():
        _replan(app, app.db, _operator(), verbose=True, rt=None if from_file else _stored_runtime(app, app.db))


# ------------------------------------------------------------------------------- timers, scheduler


def _parse_instant(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 instant such as 2026-02-23T08:00:00+07:00") from None
    if at.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. +07:00")
    if not 1900 <= at.year <= 2199:
        raise click.BadParameter(f"{value!r}: give an instant between the years 1900 and 2199")
    return at


_DURATION = re.compile(r"^(\d{1,5})([dwh])$")


def _parse_duration(value: str, option: str) -> timedelta:
    """``30d``, ``2w`` or ``12h``: a span from now, so an example command means the same on any day."""
    match = _DURATION.match(value.strip())
    if not match:
        raise click.BadParameter(f"{value!r}: give a span such as 30d (days), 2w (weeks) or 12h (hours)", param_hint=option)
    amount, unit = int(match.group(1)), match.group(2)
    span = {"d": timedelta(days=amount), "w": timedelta(weeks=amount), "h": timedelta(hours=amount)}[unit]
    if span > timedelta(days=365 * 50):
        raise click.BadParameter(f"{value!r}: at most 50 years ahead", param_hint=option)
    return span


def _mail_settings(settings: Settings) -> MailSettings:
    from .engine.notifications import MailSettings

    smtp = settings.smtp
    return MailSettings(
        enabled=smtp.enabled, sender=smtp.sender,
        retry_initial_seconds=smtp.retry_initial_seconds, retry_max_seconds=smtp.retry_max_seconds,
        lease_seconds=smtp.lease_seconds, web_base_url=settings.web.base_url,
    )


def _mailer(settings: Settings) -> SmtpMailer | None:
    from .engine.notifications import SmtpMailer

    smtp = settings.smtp
    if not smtp.enabled:
        return None
    return SmtpMailer(smtp.host, smtp.port, username=smtp.username, password=smtp.password, starttls=smtp.starttls)


def _service(app: App, **kwargs: Any) -> SchedulerService:
    from . import bootstrap
    from .engine.scheduling import SchedulerService

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    s = app.settings.scheduler
    return SchedulerService(
        db=app.db, rt=app.rt, mail=_mail_settings(app.settings), mailer=_mailer(app.settings),
        interval_seconds=s.sweep_interval_seconds, batch_size=s.batch_size, digest_time=s.digest_time,
        route_batches_per_cycle=s.route_batches_per_cycle,
        evidence=bootstrap.evidence_store(app.settings),
        webhooks=app.settings.webhooks if app.settings.webhooks.enabled else None, **kwargs,
    )


def _fixed_clock(app: App, now_text: str | None, in_text: str | None) -> None:
    """``--now INSTANT`` or ``--in SPAN`` (from now): run on a clock standing there."""
    from .engine.clock import FixedClock

    if now_text and in_text:
        raise click.UsageError("give --now or --in, not both")
    if now_text:
        app.clock = FixedClock(_parse_instant(now_text))
    elif in_text:
        app.clock = FixedClock(app.now_clock().now() + _parse_duration(in_text, "--in"))


@main.command()
@click.option("--now", "now_text", help="Sweep as of this instant (ISO 8601 with offset); default: now.")
@click.option("--in", "in_text", help="Sweep as of this span from now (30d, 2w, 12h), e.g. with --dry-run to look ahead.")
@click.option("--json", "as_json", is_flag=True, help="Print what fired as JSON.")
@click.option("--dry-run", is_flag=True, help="Show what would fire, fire nothing.")
@click.pass_context
def tick(ctx: click.Context, now_text: str | None, in_text: str | None, as_json: bool, dry_run: bool) -> None:
    """Run one sweep (and route the outbox) and print what fired."""
    from .engine.notifications import route
    from .engine.scheduling import worker_name
    from .engine.sweep import sweep

    app = _app(ctx)
    _fixed_clock(app, now_text, in_text)
    with engine_errors():
        now = app.now_clock().now()
        report = sweep(app.db, app.rt, now, batch_size=app.settings.scheduler.batch_size, worker=f"tick:{worker_name()}", dry_run=dry_run)
        routed = 0 if dry_run else route(app.db, now, _mail_settings(app.settings))
    if as_json:
        click.echo(json.dumps({
            "now": now.isoformat(), "dry_run": dry_run, "routed": routed, "failed_cases": report.failed_cases,
            "fired": [
                {"case": f.case_id, "timer_id": f.timer_id, "timer": f.timer, "step": f.step, "kind": f.kind, "level": f.level,
                 "outcome": f.outcome, "scheduled_at": f.scheduled_at.isoformat(), "detail": f.detail}
                for f in report.fired
            ],
        }, ensure_ascii=False))
        return
    for f in report.fired:
        step = f.kind + (f" {f.level}" if f.level else "")
        click.echo(f"case #{f.case_id:<5} {f.timer:<24} {step:<12} {f.outcome:<8} at {_local(f.scheduled_at)} {f.detail}")
    verb = "would fire" if dry_run else "fired"
    click.echo(f"{verb} {report.count} steps, skipped {len(report.fired) - report.count}; {len(report.failed_cases)} cases failed")


@main.group()
def timers() -> None:
    """Inspect planned deadlines."""


@timers.command("list")
@click.option("--due-before", "due_before", help="Only timers whose next step is before this instant (ISO 8601).")
@click.option("--due-within", "due_within", help="Only timers whose next step is within this span from now (30d, 2w, 12h).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--as", "as_user", help="Act as this user (scope applies); default: the console operator.")
@click.pass_context
def timers_list(ctx: click.Context, due_before: str | None, due_within: str | None, limit: int, as_user: str | None) -> None:
    """List pending timers by their next step."""
    from .engine.deadlines import upcoming_deadlines
    from .engine.permissions import CONSOLE

    app = _app(ctx)
    if due_before and due_within:
        raise click.UsageError("give --due-before or --due-within, not both")
    before = _parse_instant(due_before) if due_before else None
    if due_within:
        before = app.now_clock().now() + _parse_duration(due_within, "--due-within")
    with engine_errors(), app.db.read() as session:
        actor = _actor(session, as_user) if as_user else CONSOLE
        for timer in upcoming_deadlines(session, app.rt, actor, due_before=before, limit=limit):
            click.echo(
                f"timer {timer.timer_id:<5} case #{timer.case_id:<5} {timer.unit_code:<9} {timer.name:<24} due {timer.due_date} "
                f"next step {timer.next_step} at {_local(timer.next_at)} level {timer.level}"
            )


@main.command()
@click.option("--now", "now_text", help="Run on a clock standing at this instant (for tests and drills).")
@click.option("--exit-when-idle", is_flag=True, help="Stop after the first sweep that finds nothing due.")
@click.option("--interval", type=click.IntRange(min=1), help="Seconds between sweeps (default from settings).")
@click.pass_context
def scheduler(ctx: click.Context, now_text: str | None, exit_when_idle: bool, interval: int | None) -> None:
    """Run the scheduler alone, in the foreground. Several may run against PostgreSQL."""
    app = _app(ctx)
    app.application_name = "qmsflow-scheduler"
    _fixed_clock(app, now_text, None)
    with engine_errors():
        _ = app.db  # refuse a missing or outdated database before anything else
        _register_history_keys(app)
        _warn_if_calendar_differs(app)
        service = _service(app, exit_when_idle=exit_when_idle)
        if interval:
            service.interval_seconds = interval
        click.echo(f"scheduler {service.worker} on {app.db.safe_url}, every {service.interval_seconds} s")
        service.run_forever()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-scheduler", is_flag=True, help="Do not run the embedded scheduler in this process.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Requests served at once.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, no_scheduler: bool, threads: int) -> None:
    """Serve the web app, with one embedded scheduler unless told not to."""
    from waitress.server import create_server

    from .config import ensure_instance
    from .engine.errors import ConfigurationError
    from .web import create_app

    app = _app(ctx)
    app.application_name = "qmsflow-web"
    with engine_errors():
        _ = app.db  # refuse a missing or outdated database before anything else
        app.settings = ensure_instance(app.settings)
        web = create_app(settings=app.settings, db=app.db, runtime=app.rt)
        try:
            # Bind before announcing: a port in use is a one-line refusal, not a traceback after "qmsflow on ...".
            server = create_server(web, host=host, port=port, threads=threads)
        except OSError as exc:
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port or --host") from None
        service = None
        _register_history_keys(app)
        _warn_if_calendar_differs(app)
        if app.settings.scheduler.embedded and not no_scheduler:
            # One scheduler for the process; waitress serves with threads, never forks workers.
            service = _service(app)
            service.start_background()
    click.echo(f"qmsflow on http://{host}:{port}/  (scheduler {'on' if service else 'off'}; sign in at http://{host}:{port}/sign-in)")
    try:
        server.run()
    finally:
        if service:
            service.shutdown()


if __name__ == "__main__":  # pragma: no cover
    main()
