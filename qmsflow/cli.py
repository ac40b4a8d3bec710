"""The ``qmsflow`` command line: set up, load the demo, manage users, run and inspect cases, audit."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy import select

from . import bootstrap
from .config import Settings, ensure_instance, load_settings
from .engine import cases, history
from .engine.clock import LOCAL_TZ, Clock, FixedClock, SystemClock, local_date
from .engine.db import Database
from .engine.definitions import load_definition
from .engine.errors import (
    ConfigurationError,
    Conflict,
    DefinitionError,
    FieldProblem,
    GuardFailed,
    InvalidTransition,
    NotFound,
    NotPermitted,
    QmsflowError,
    StaleVersion,
    ValidationFailed,
)
from .engine.models import Unit
from .engine.notifications import MailSettings, SmtpMailer, route
from .engine.permissions import Actor
from .engine.replanning import apply_calendar, apply_calendar_if_changed, stored_fingerprint
from .engine.runtime import Runtime
from .engine.scheduling import SchedulerService, worker_name
from .engine.sweep import sweep
from .engine.units import unit_by_code
from .engine.users import USER_ROLES, create_user, user_by_name

# Exit codes, so scripts can tell refusals apart.
EXIT_CODES: dict[type[QmsflowError], int] = {
    NotFound: 4,
    NotPermitted: 3,
    StaleVersion: 5,
    InvalidTransition: 6,
    GuardFailed: 7,
    ValidationFailed: 2,
    Conflict: 8,
    DefinitionError: 9,
    ConfigurationError: 10,
}


@dataclass
class App:
    """What every command needs, built lazily from settings."""

    settings: Settings
    clock: Clock
    application_name: str = "qmsflow-cli"
    _db: Database | None = None
    _rt: Runtime | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = bootstrap.open_database(self.settings, self.application_name)
        return self._db

    @property
    def rt(self) -> Runtime:
        if self._rt is None:
            self._rt = bootstrap.build_runtime(self.settings, self.clock)
        return self._rt


def fail(exc: QmsflowError) -> NoReturn:
    """Print an engine error the way an operator can act on, and exit with its code."""
    click.echo(f"error: {exc}", err=True)
    for kind, code in EXIT_CODES.items():
        if isinstance(exc, kind):
            sys.exit(code)
    sys.exit(1)


@contextmanager
def engine_errors() -> Iterator[None]:
    """Turn engine errors into messages and exit codes instead of tracebacks."""
    try:
        yield
    except QmsflowError as exc:
        fail(exc)


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """qmsflow: ISO 9001 quality management lifecycles for Vietnamese public bodies."""
    with engine_errors():
        ctx.obj = App(settings=load_settings(), clock=SystemClock())


def _app(ctx: click.Context) -> App:
    app: App = ctx.find_root().obj
    return app


def _initialise(app: App) -> None:
    app.settings = ensure_instance(app.settings)
    bootstrap.upgrade(app.db)
    _replan_if_calendar_changed(app)


def _replan_if_calendar_changed(app: App) -> None:
    """A changed calendar.yaml re-plans pending deadlines before anything runs on the new calendar."""
    with app.db.write() as session:
        known = stored_fingerprint(session) is not None
        moved = apply_calendar_if_changed(session, app.rt)
    if known and moved:
        click.echo(f"calendar overrides changed: {len(moved)} pending deadlines re-planned")


@main.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create or upgrade the database schema (safe to run again); generate missing secrets."""
    app = _app(ctx)
    with engine_errors():
        _initialise(app)
    click.echo(f"database ready: {app.db.engine.url.render_as_string(hide_password=True)}")


@main.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Initialise and load the demo province (only into an empty database)."""
    from .demo import build_demo, has_data

    app = _app(ctx)
    with engine_errors():
        _initialise(app)
        with app.db.write() as session:
            if has_data(session):
                click.echo("the database already has units; demo not loaded again")
                return
            counts = build_demo(session, app.rt, log=lambda m: click.echo(f"  {m}"))
    click.echo(f"demo loaded: {counts['units']} units, {counts['users']} users, {counts['cases']} cases")


# ------------------------------------------------------------------------------------------ users


@main.group()
def users() -> None:
    """Manage users."""


@users.command("create")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice([r.value for r in USER_ROLES]))
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
    from .engine.permissions import CONSOLE, AdminArea, require_admin

    app = _app(ctx)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    with engine_errors(), app.db.write() as session:
        require_admin(_actor(session, as_user) if as_user else CONSOLE, AdminArea.USERS)
        now = app.clock.now()
        unit = unit_by_code(session, unit_code, local_date(now)) if unit_code else None
        user = create_user(
            session, username=username, role=role, unit=unit, email=email, full_name=full_name, password=password, now=now
        )
        click.echo(f"created user {user.username} ({user.role}{', ' + unit.name if unit else ''})")


@users.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """List users."""
    from .engine.models import User

    app = _app(ctx)
    with app.db.read() as session:
        for user in session.scalars(select(User).order_by(User.username)):
            unit = user.unit.code if user.unit else "-"
            click.echo(f"{user.username:<16} {user.role:<13} {unit:<10} {user.full_name}")


# -------------------------------------------------------------------------------------- workflows


@main.group()
def workflows() -> None:
    """Check and list workflow definitions."""


@workflows.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def workflows_validate(paths: tuple[Path, ...]) -> None:
    """Check definition files (or folders of them); list every problem and exit non-zero if any."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
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
        sys.exit(EXIT_CODES[DefinitionError])


@workflows.command("list")
@click.pass_context
def workflows_list(ctx: click.Context) -> None:
    """List the loaded definitions with their states and events."""
    app = _app(ctx)
    with engine_errors():
        for d in app.rt.registry.definitions():
            click.echo(f"{d.name} v{d.version}  {d.spec.label.get(app.rt.language)}")
            click.echo(f"  states: {', '.join(d.spec.states)}")
            click.echo(f"  events: {', '.join(d.spec.events)}")
            if d.spec.obligations:
                click.echo(f"  obligations: {', '.join(d.spec.obligations)}")


# ------------------------------------------------------------------------------------------ cases


def _actor(session: Any, username: str) -> Actor:
    return Actor.of(user_by_name(session, username))


def _parse_data(items: tuple[str, ...]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for item in items:
        if item.startswith("{"):
            try:
                loaded = json.loads(item)
            except json.JSONDecodeError as exc:
                raise ValidationFailed([FieldProblem("--data", f"not valid JSON: {exc.msg}")]) from None
            if not isinstance(loaded, dict):
                raise ValidationFailed([FieldProblem("--data", "JSON data must be an object")])
            data.update(loaded)
        elif "=" in item:
            key, value = item.split("=", 1)
            data[key.strip()] = value
        else:
            raise ValidationFailed([FieldProblem("--data", f"{item!r}: use key=value or a JSON object")])
    return data


def _local(at: Any) -> str:
    return at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M") if at else "-"


@main.group("cases")
def cases_group() -> None:
    """Open, list, show and advance cases."""


@cases_group.command("list")
@click.option("--as", "as_user", required=True, help="Act as this user (scope applies).")
@click.option("--workflow")
@click.option("--state")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cases_list(ctx: click.Context, as_user: str, workflow: str | None, state: str | None, as_json: bool) -> None:
    """List the cases a user may see."""
    app = _app(ctx)
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
            label = app.rt.registry.get(c.workflow, c.workflow_version).spec.states[c.state].label.get(app.rt.language)
            click.echo(f"#{c.id:<5} {units[c.unit_id].code:<9} {c.workflow:<18} v{c.version:<3} {c.state:<13} {label}")


@cases_group.command("show")
@click.argument("case_id", type=int)
@click.option("--as", "as_user", required=True)
@click.pass_context
def cases_show(ctx: click.Context, case_id: int, as_user: str) -> None:
    """Show a case: state, data, allowed events, timers, obligations and history."""
    app = _app(ctx)
    lang = app.rt.language
    with engine_errors(), app.db.read() as session:
        actor = _actor(session, as_user)
        case = cases.get_case(session, app.rt, actor, case_id)
        definition = app.rt.registry.get(case.workflow, case.workflow_version)
        click.echo(f"case #{case.id}  {case.unit.name} ({case.unit.code})")
        click.echo(f"workflow {case.workflow} v{case.workflow_version}  version {case.version}")
        click.echo(f"state    {case.state}: {definition.spec.states[case.state].label.get(lang)}")
        if case.data:
            click.echo("data:")
            for k, v in sorted(case.data.items()):
                click.echo(f"  {k} = {v}")
        from .engine.actions import allowed_events
        from .engine.deadlines import case_deadlines
        from .engine.timeline import case_timeline

        allowed = [a.event if a.enabled else f"{a.event} (not yet: {a.reason})" for a in allowed_events(session, app.rt, actor, case)]
        click.echo(f"events you may fire: {', '.join(allowed) or '-'}")
        for t in case_deadlines(session, app.rt, actor, case):
            click.echo(
                f"timer  {t.name:<24} due {t.due_date} (passes {_local(t.due_at)}), next step at {_local(t.next_at)}, "
                f"{t.working_days_left} working days left{' LATE' if t.late else ''}"
            )
        for ob in cases.open_obligations(session, case):
            click.echo(f"obligation {ob.name} (cycle {ob.cycle}) open since {_local(ob.opened_at)}")
        click.echo("history:")
        for h in case_timeline(session, app.rt, actor, case.id):
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
    app = _app(ctx)
    with engine_errors(), app.db.write() as session:
        actor = _actor(session, as_user)
        unit = unit_by_code(session, unit_code, local_date(app.clock.now()))
        case = cases.open_case(session, app.rt, actor, unit, workflow, _parse_data(data_items))
        click.echo(f"opened case #{case.id} ({case.workflow}, {case.state})")


@cases_group.command("advance")
@click.argument("case_id", type=int)
@click.argument("event")
@click.option("--as", "as_user", required=True)
@click.option("--data", "data_items", multiple=True, help="key=value or a JSON object; repeatable.")
@click.option("--expect-version", type=int, help="Refuse if the case has moved on since you read it.")
@click.pass_context
def cases_advance(
    ctx: click.Context, case_id: int, event: str, as_user: str, data_items: tuple[str, ...], expect_version: int | None
) -> None:
    """Fire EVENT on case CASE_ID as a user."""
    app = _app(ctx)
    with engine_errors(), app.db.write() as session:
        actor = _actor(session, as_user)
        result = cases.advance(
            session, app.rt, actor, case_id, event, _parse_data(data_items), expected_version=expect_version
        )
        click.echo(f"case #{case_id}: {result.event}: {result.from_state} -> {result.to_state} (version {result.case.version})")


# ------------------------------------------------------------------------------------------ audit


@main.group()
def audit() -> None:
    """Check the tamper-evident history."""


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Verify every case's history chain with the history key; exit 1 on any finding."""
    app = _app(ctx)
    with engine_errors(), app.db.read() as session:
        checked, rows, findings = history.verify_all(session, app.rt.history_key)
    for finding in findings:
        click.echo(str(finding), err=True)
    if findings:
        click.echo(f"{len(findings)} problems in {checked} cases ({rows} rows)", err=True)
        sys.exit(1)
    click.echo(f"ok: {checked} cases, {rows} history rows verified")


# --------------------------------------------------------------------------------------- calendar


@main.group()
def calendar() -> None:
    """The working calendar."""


@calendar.command("show")
@click.argument("year", type=int)
@click.pass_context
def calendar_show(ctx: click.Context, year: int) -> None:
    """List the weekdays off and the make-up working days of YEAR."""
    app = _app(ctx)
    cal = app.rt.calendar
    with engine_errors():
        for day, reason in cal.days_off_between(date(year, 1, 1), date(year, 12, 31)):
            if reason != "weekend":
                click.echo(f"{day} {day.strftime('%a')} off      {reason}")
        for day, name in sorted(cal.overrides.working_days.items()):
            if day.year == year:
                click.echo(f"{day} {day.strftime('%a')} working  {name}")


@calendar.command("replan")
@click.pass_context
def calendar_replan(ctx: click.Context) -> None:
    """Re-plan pending timers against the current calendar overrides."""
    app = _app(ctx)
    with engine_errors(), app.db.write() as session:
        moved = apply_calendar(session, app.rt)
        for m in moved:
            click.echo(f"timer {m.timer_id} ({m.name}, case #{m.case_id}): {m.old_due} -> {m.new_due}")
        click.echo(f"{len(moved)} deadlines re-planned")


# ------------------------------------------------------------------------------- timers, scheduler


def _parse_instant(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 instant such as 2026-02-23T08:00:00+07:00") from None
    if at.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. +07:00")
    return at


def _mail_settings(settings: Settings) -> MailSettings:
    smtp = settings.smtp
    return MailSettings(
        enabled=smtp.enabled, sender=smtp.sender,
        retry_initial_seconds=smtp.retry_initial_seconds, retry_max_seconds=smtp.retry_max_seconds,
    )


def _mailer(settings: Settings) -> SmtpMailer | None:
    smtp = settings.smtp
    if not smtp.enabled:
        return None
    return SmtpMailer(smtp.host, smtp.port, username=smtp.username, password=smtp.password, starttls=smtp.starttls)


def _service(app: App, **kwargs: Any) -> SchedulerService:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    s = app.settings.scheduler
    return SchedulerService(
        db=app.db, rt=app.rt, mail=_mail_settings(app.settings), mailer=_mailer(app.settings),
        interval_seconds=s.sweep_interval_seconds, batch_size=s.batch_size, digest_time=s.digest_time, **kwargs,
    )


@main.command()
@click.option("--now", "now_text", help="Sweep as of this instant (ISO 8601 with offset); default: now.")
@click.option("--json", "as_json", is_flag=True, help="Print what fired as JSON.")
@click.option("--dry-run", is_flag=True, help="Show what would fire, fire nothing.")
@click.pass_context
def tick(ctx: click.Context, now_text: str | None, as_json: bool, dry_run: bool) -> None:
    """Run one sweep (and route the outbox) and print what fired."""
    app = _app(ctx)
    if now_text:
        app.clock = FixedClock(_parse_instant(now_text))
    with engine_errors():
        now = app.clock.now()
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
@click.option("--limit", default=100, show_default=True)
@click.option("--as", "as_user", help="Act as this user (scope applies); default: the console operator.")
@click.pass_context
def timers_list(ctx: click.Context, due_before: str | None, limit: int, as_user: str | None) -> None:
    """List pending timers by their next step."""
    from .engine.deadlines import upcoming_deadlines
    from .engine.permissions import CONSOLE

    app = _app(ctx)
    before = _parse_instant(due_before) if due_before else None
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
@click.option("--interval", type=int, help="Seconds between sweeps (default from settings).")
@click.pass_context
def scheduler(ctx: click.Context, now_text: str | None, exit_when_idle: bool, interval: int | None) -> None:
    """Run the scheduler alone, in the foreground. Several may run against PostgreSQL."""
    app = _app(ctx)
    app.application_name = "qmsflow-scheduler"
    if now_text:
        app.clock = FixedClock(_parse_instant(now_text))
    with engine_errors():
        _replan_if_calendar_changed(app)
        service = _service(app, exit_when_idle=exit_when_idle)
        if interval:
            service.interval_seconds = interval
        click.echo(f"scheduler {service.worker} on {app.db.engine.url.render_as_string(hide_password=True)}, every {service.interval_seconds} s")
        service.run_forever()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--no-scheduler", is_flag=True, help="Do not run the embedded scheduler in this process.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, no_scheduler: bool) -> None:
    """Serve the web app, with one embedded scheduler unless told not to."""
    from waitress import serve as waitress_serve

    from .web import create_app

    app = _app(ctx)
    app.application_name = "qmsflow-web"
    with engine_errors():
        app.settings = ensure_instance(app.settings)
        web = create_app(settings=app.settings, db=app.db, runtime=app.rt)
        service = None
        if app.settings.scheduler.embedded and not no_scheduler:
            _replan_if_calendar_changed(app)
            # One scheduler for the process; waitress serves with threads, never forks workers.
            service = _service(app)
            service.start_background()
    click.echo(f"qmsflow on http://{host}:{port}/  (scheduler {'on' if service else 'off'})")
    try:
        waitress_serve(web, host=host, port=port, threads=8)
    finally:
        if service:
            service.shutdown()


if __name__ == "__main__":  # pragma: no cover
    main()
