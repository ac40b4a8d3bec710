"""The sweep: fire every timer step that has come due, exactly once, in due order.

Deadlines are rows (STYLE habit 6): APScheduler only wakes this function. Each batch is one
transaction that claims up to ``batch_size`` cases with due timers, fires their due steps in due
order and commits, so a crash loses at most the batch in flight, which the next sweep redoes.

Claiming locks *case* rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and only then the timers of
those cases, the same order a user's transition takes, so a sweep and a user never deadlock, and
several schedulers share the work without waiting on each other. On SQLite the write transaction
itself (``BEGIN IMMEDIATE``) is the lock. Underneath both, the unique (timer, step) constraint on
``timer_firings`` makes a second firing of the same step impossible.

Firing is computed first and written after, one statement per table for the whole batch: most
steps only record a history row, an outbox notification and the timer's next step, and writing them
row by row cost most of a sweep (bench/RESULTS.md). A case whose due step fires an event (``on_due``)
runs a transition, so it is handled on its own, inside a savepoint. If the batched write fails, the
batch is rolled back to its savepoint and redone case by case; a case whose handling raises is rolled
back to its own savepoint, logged and left for the next sweep. It never stops the others. After a
savepoint rollback every loaded object reads its row again (``models.expire_after_savepoint_rollback``),
so the next case never sees a value of the one rolled back.

One sweep, one instant: every step it fires, and every transition a due action runs, is stamped and
planned at the sweep's ``now``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from . import calendar_store, history
from . import events as integration_events
from .cases import advance
from .clock import local_date
from .db import Database
from .definitions import Definition, Target, TimerSpec
from .errors import GuardFailed, InvalidTransition, NotPermitted
from .messages import notification_params, render
from .models import Case, Notification, Timer, TimerFiring, Unit, keep_in_step
from .permissions import SYSTEM
from .runtime import Runtime
from .timers import Step, plan_steps, timer_key
from .units import Hierarchy

log = logging.getLogger(__name__)

_TIMERS = cast(Table, Timer.__table__)
_ANY_DUE = select(_TIMERS.c.id).where(_TIMERS.c.status == "pending", _TIMERS.c.next_at <= bindparam("now")).limit(1)
_INSERT_FIRING = insert(cast(Table, TimerFiring.__table__))
_INSERT_NOTIFICATION = insert(cast(Table, Notification.__table__))
# The SET clause is the parameters' keys: the timer's next step, level, status and closing time.
_UPDATE_TIMER = update(_TIMERS).where(_TIMERS.c.id == bindparam("timer_id_"))

# What a due action may meet and record as "refused": the definition's own answers. ``advance`` has
# rolled its savepoint back, so nothing of the refused transition remains. Anything else (a busy
# database, a deadlock, a bug) is not a refusal: it rolls the whole case back and its step stays due
# for the next sweep, so an on_due action is never lost.
BUSINESS_REFUSALS = (InvalidTransition, GuardFailed, NotPermitted)

# A reminder is sent on its day; once that day is over (or a later step is already due) it is
# recorded as skipped, because a reminder that arrives after the deadline only misleads.
REMINDER_GRACE = timedelta(days=1)


@dataclass(frozen=True)
class Fired:
    """One step the sweep handled."""

    case_id: int
    timer_id: int
    timer: str
    step: int
    kind: str
    level: int
    outcome: str  # fired | skipped
    scheduled_at: datetime
    detail: str = ""


@dataclass
class SweepReport:
    """What one sweep did."""

    fired: list[Fired] = field(default_factory=list)
    failed_cases: list[int] = field(default_factory=list)
    batches: int = 0

    @property
    def count(self) -> int:
        """How many steps fired (not counting skipped ones)."""
        return sum(1 for f in self.fired if f.outcome == "fired")


@dataclass
class _Writes:
    """What firing changes, kept until written: once per batch, or once per case when it must be."""

    history: history.HistoryBatch = field(default_factory=history.HistoryBatch)
    firings: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    timers: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)  # integrators' event rows (engine/events.py)

    def move_timer(self, timer: Timer, **values: Any) -> None:
        """Stage the timer's new step; the loaded timer matches at once, so no flush writes it."""
        keep_in_step(timer, values)
        self.timers[timer.id] = {"timer_id_": timer.id, **values}

    def write(self, session: Session) -> None:
        """Write everything staged, one executemany per table, and start empty."""
        # Firings first: their unique (timer, step) is what makes a second firing fail before the rest.
        if self.firings:
            session.execute(_INSERT_FIRING, self.firings)
        self.history.write(session)
        if self.notifications:
            session.execute(_INSERT_NOTIFICATION, self.notifications)
        if self.timers:
            session.execute(_UPDATE_TIMER, list(self.timers.values()))
        integration_events.write(session, self.events)
        self.events.clear()
        self.firings.clear()
        self.notifications.clear()
        self.timers.clear()


def sweep(
    db: Database,
    rt: Runtime,
    now: datetime | None = None,
    *,
    batch_size: int = 200,
    worker: str = "sweep",
    dry_run: bool = False,
    max_batches: int | None = None,
) -> SweepReport:
    """Fire every step due at ``now`` (default: the runtime clock); return what happened.

    ``dry_run`` computes the same report batch by batch, rolling each batch back.
    """
    now = now or rt.clock.now()
    report = SweepReport()
    previewed: set[int] = set()  # a dry run's rolled-back cases, so the next batch moves on
    # Look before taking the write lock: most sweeps find nothing due, and on SQLite a write
    # transaction (BEGIN IMMEDIATE) would hold every other writer back just to learn that.
    with db.glance() as connection:
        # Only on the stored calendar: on another, steps would be planned differently from their rows.
        calendar_store.check(connection, rt.calendar, planning=False)
        if connection.execute(_ANY_DUE, {"now": now}).first() is None:
            return report
    firing = _Firing(rt, now, worker, report)
    with db.translated():  # a busy or unavailable database is the engine's typed error, as for db.write()
        _sweep_batches(db, firing, now, batch_size, dry_run, max_batches, previewed)
    report.failed_cases = sorted(firing.failed)
    return report


def _sweep_batches(
    db: Database, firing: _Firing, now: datetime, batch_size: int, dry_run: bool, max_batches: int | None, previewed: set[int]
) -> None:
    report = firing.report
    while max_batches is None or report.batches < max_batches:
        session = db.write_factory()
        try:
            with session.begin():
                # Again in each batch's transaction: a replan may have begun since (it stops sweeps until it ends).
                calendar_store.check(session, firing.rt.calendar, planning=False)
                claimed = _claim(session, now, batch_size, firing.failed | previewed, db.is_sqlite)
                if not claimed:
                    break
                report.batches += 1
                # One query each for the batch's due timers and units, instead of one per case.
                due = _due_timers(session, [case.id for case in claimed], now)
                units = session.scalars(select(Unit).where(Unit.id.in_({case.unit_id for case in claimed}))).all()
                firing.batch(session, claimed, due)
                del units  # held until here: the identity map keeps only what is referenced
                if dry_run:
                    previewed.update(case.id for case in claimed)
                    session.rollback()
        finally:
            session.close()
        if len(claimed) < batch_size:
            break


def _claim(session: Session, now: datetime, batch_size: int, failed: set[int], is_sqlite: bool) -> list[Case]:
    due_cases = (
        select(Timer.case_id)
        .where(Timer.status == "pending", Timer.next_at <= now)
        .order_by(Timer.next_at)
        .limit(batch_size * 4)
    )
    if failed:
        due_cases = due_cases.where(Timer.case_id.not_in(failed))
    # The earliest due timers come from the (status, next_at) index; their cases are claimed soonest
    # due first, so a case due long ago is never left behind ones that came due later.
    earliest = due_cases.add_columns(Timer.next_at.label("next_at")).subquery()
    first_due = (
        select(earliest.c.case_id, func.min(earliest.c.next_at).label("first_due")).group_by(earliest.c.case_id).subquery()
    )
    query = select(Case).join(first_due, first_due.c.case_id == Case.id).order_by(first_due.c.first_due, Case.id).limit(batch_size)
    if not is_sqlite:
        query = query.with_for_update(skip_locked=True, of=Case)
    return list(session.scalars(query))


def _due_timers(session: Session, case_ids: list[int], now: datetime) -> dict[int, list[Timer]]:
    """Lock and return the claimed cases' due timers, per case, in due order."""
    by_case: dict[int, list[Timer]] = {}
    for timer in session.scalars(
        select(Timer)
        .where(Timer.case_id.in_(case_ids), Timer.status == "pending", Timer.next_at <= now)
        .order_by(Timer.case_id, Timer.next_at, Timer.id)
        .with_for_update()
    ):
        by_case.setdefault(timer.case_id, []).append(timer)
    return by_case


@dataclass
class _Firing:
    """One sweep's firing: what it fired, the cases that failed, and the plans it has worked out."""

    rt: Runtime
    now: datetime
    worker: str
    report: SweepReport
    failed: set[int] = field(default_factory=set)
    # Cases ordered on the same day share their plans: (workflow, version, timer, start, due) -> steps.
    plans: dict[tuple[str, int, str, date, date], list[Step]] = field(default_factory=dict)
    # The unit hierarchy on the sweep's day, read once when the first escalation needs it.
    _hierarchy: Hierarchy | None = None

    def hierarchy(self, session: Session) -> Hierarchy:
        """The hierarchy escalations of this sweep go up, read in a fixed number of statements on first use."""
        if self._hierarchy is None:
            self._hierarchy = Hierarchy.load(session, local_date(self.now))
        return self._hierarchy

    def batch(self, session: Session, claimed: list[Case], due: dict[int, list[Timer]]) -> None:
        """Fire a claimed batch: cases that run a transition one by one, the rest with batched writes."""
        batched: list[Case] = []
        for case in claimed:
            if self.runs_a_transition(case, due.get(case.id, [])):
                self.one_case(session, case, due.get(case.id, []))
            else:
                batched.append(case)
        if batched:
            self.batched_cases(session, batched, due)

    def runs_a_transition(self, case: Case, timers: list[Timer]) -> bool:
        """Whether a timer's due step with an ``on_due`` event is among the steps due now (or the case is unreadable)."""
        try:
            definition = self.rt.registry.get(case.workflow, case.workflow_version)
            for timer in timers:
                key = timer_key(timer)
                if definition.timer_spec(key).on_due:
                    steps = self.plan(definition, key, timer)
                    due_step = next(step for step in steps if step.kind == "due")
                    if timer.next_step <= due_step.index and due_step.at <= self.now:
                        return True
            return False
        except Exception:  # let the case-by-case path log it and go on
            return True

    def batched_cases(self, session: Session, cases: list[Case], due: dict[int, list[Timer]]) -> None:
        """Fire cases whose steps only record and notify, then write each table once for all of them."""
        done_before = len(self.report.fired)
        savepoint = session.begin_nested()
        try:
            writes = _Writes()
            with session.no_autoflush:  # nothing is flushed half-way: the reads below only look up units
                for case in cases:
                    self.case(session, case, due.get(case.id, []), writes)
            writes.write(session)
            savepoint.commit()
        except Exception:
            savepoint.rollback()
            del self.report.fired[done_before:]
            session.expire_all()  # the loaded cases and timers were moved ahead of what is now written
            log.warning("sweep: a batch of %d cases failed; firing them one by one", len(cases), exc_info=True)
            for case in cases:
                self.one_case(session, case, due.get(case.id, []))

    def one_case(self, session: Session, case: Case, timers: list[Timer]) -> None:
        """Fire one case inside its own savepoint; on any error roll it back, log it and go on."""
        savepoint = session.begin_nested()
        done_before = len(self.report.fired)
        try:
            writes = _Writes()
            self.case(session, case, timers, writes)
            writes.write(session)
            savepoint.commit()
        except Exception:  # one broken case must not block the whole sweep
            savepoint.rollback()
            del self.report.fired[done_before:]
            self.failed.add(case.id)
            log.exception("sweep: case %s failed and was skipped", case.id)

    def case(self, session: Session, case: Case, timers: list[Timer], writes: _Writes) -> None:
        """Fire every due step of the case's due timers, staging what they write."""
        definition = self.rt.registry.get(case.workflow, case.workflow_version)
        bodies: dict[Target, int | None] = {}  # who each target is for this case today, resolved once
        for timer in timers:
            self.due_steps(session, definition, case, timer, bodies, writes)

    def plan(self, definition: Definition, key: str, timer: Timer) -> list[Step]:
        """Return the timer's plan, worked out once per sweep for each definition, timer and dates."""
        cache_key = (definition.name, definition.version, key, timer.start_date, timer.due_date)
        steps = self.plans.get(cache_key)
        if steps is None:
            steps = plan_steps(definition.timer_spec(key), definition.ladder(key), timer.start_date, timer.due_date, self.rt.calendar)
            self.plans[cache_key] = steps
        return steps

    def due_steps(
        self, session: Session, definition: Definition, case: Case, timer: Timer, bodies: dict[Target, int | None], writes: _Writes
    ) -> None:
        """Fire the timer's steps that are due, in order, and stage its next step."""
        key = timer_key(timer)
        spec = definition.timer_spec(key)
        steps = self.plan(definition, key, timer)
        now = self.now
        while timer.status == "pending" and timer.next_step < len(steps) and steps[timer.next_step].at <= now:
            step = steps[timer.next_step]
            later_due = timer.next_step + 1 < len(steps) and steps[timer.next_step + 1].at <= now
            outcome, detail = _fire_step(
                session, self.rt, definition, spec, case, timer, step, steps, now, later_due, bodies, writes, self.hierarchy
            )
            writes.firings.append(
                {
                    "timer_id": timer.id, "step": step.index, "kind": step.kind, "level": step.level, "outcome": outcome,
                    "scheduled_at": step.at, "fired_at": now, "fired_by": self.worker,
                }
            )
            self.report.fired.append(
                Fired(case.id, timer.id, timer.name, step.index, step.kind, step.level, outcome, step.at, detail)
            )
            if timer.status != "pending":  # the due action moved the case out of the timer's state
                break
            level = step.level if step.kind == "escalation" and outcome == "fired" else timer.level
            if step.index + 1 < len(steps):
                writes.move_timer(timer, next_step=step.index + 1, level=level, next_at=steps[step.index + 1].at, status="pending", closed_at=None)
            else:
                writes.move_timer(timer, next_step=step.index + 1, level=level, next_at=None, status="done", closed_at=now)
        # Every claimed timer makes progress. One whose stored instant has passed but whose next step,
        # as this sweep plans it, has not (the row was planned on another calendar, or a replan raced
        # the sweep) moves to that step's instant: left alone, it was claimed again in every batch and
        # nothing fired, and due cases behind it waited (review reproduction b_livelock).
        if timer.status == "pending" and timer.next_at is not None and timer.next_at <= now:
            if timer.next_step < len(steps):
                writes.move_timer(
                    timer, next_step=timer.next_step, level=timer.level, next_at=steps[timer.next_step].at, status="pending", closed_at=None
                )
            else:
                writes.move_timer(timer, next_step=timer.next_step, level=timer.level, next_at=None, status="done", closed_at=now)


def _fire_step(
    session: Session,
    rt: Runtime,
    definition: Definition,
    spec: TimerSpec,
    case: Case,
    timer: Timer,
    step: Step,
    steps: list[Step],
    now: datetime,
    later_due: bool,
    bodies: dict[Target, int | None],
    writes: _Writes,
    hierarchy: Callable[[Session], Hierarchy],
) -> tuple[str, str]:
    base = {"timer": timer.name, "step": step.index, "due": timer.due_date.isoformat(), "scheduled_at": history.canonical_instant(step.at)}
    if step.kind == "reminder":
        if later_due or now >= step.at + REMINDER_GRACE:
            writes.history.append(rt.history_key, case, at=now, kind="reminder_skipped", actor=SYSTEM.username, data=base)
            return "skipped", "passed"
        _notify(session, rt, writes, definition, case, timer, "reminder", 0, "unit", case.unit_id, now)
        writes.history.append(rt.history_key, case, at=now, kind="reminder", actor=SYSTEM.username, data=base)
        writes.events.append(integration_events.row(case, integration_events.REMINDER_FIRED, now, base))
        return "fired", ""
    if step.kind == "due":
        writes.history.append(rt.history_key, case, at=now, kind="deadline_passed", actor=SYSTEM.username, data=base)
        if spec.on_due:
            writes.write(session)  # the transition appends to the same chain and may close this timer
            try:
                # the sweep's instant, not the runtime clock: one operation, one "now" (history order, plans)
                advance(session, rt, SYSTEM, case.id, spec.on_due, {}, now=now)
            except BUSINESS_REFUSALS as exc:  # the case moved on in a way the definition allows; say so
                writes.history.append(
                    rt.history_key, case, at=now, kind="timer_action_refused", actor=SYSTEM.username,
                    data={**base, "event": spec.on_due, "error": type(exc).__name__},
                )
                return "fired", f"{spec.on_due} refused: {type(exc).__name__}"
            return "fired", spec.on_due
        return "fired", ""
    assert step.target is not None

    units = hierarchy(session)

    def body_of(target: Target) -> int | None:
        if target not in bodies:
            bodies[target] = units.body(case.unit_id, target)
        return bodies[target]

    body = body_of(step.target)
    earlier = [s.target for s in steps if s.kind == "escalation" and s.level == step.level - 1]
    previous = body_of(earlier[0]) if earlier and earlier[0] is not None else None
    data = {**base, "level": step.level, "target": step.target.value}
    if body is None or body == previous:
        reason = "no_body" if body is None else "same_body"
        writes.history.append(rt.history_key, case, at=now, kind="escalation_skipped", actor=SYSTEM.username, data={**data, "reason": reason})
        return "skipped", reason
    unit_code = units.codes.get(body)
    if unit_code is None:  # the case's own unit (unit head): in the session with the batch's units
        unit = session.get(Unit, body)
        unit_code = unit.code if unit else str(body)
    writes.history.append(
        rt.history_key, case, at=now, kind="escalated", actor=SYSTEM.username, data={**data, "body": unit_code}
    )
    _notify(session, rt, writes, definition, case, timer, "escalation", step.level, step.target.value, body, now)
    writes.events.append(integration_events.row(case, integration_events.ESCALATION_FIRED, now, {**data, "body": unit_code}))
    return "fired", f"{step.target.value} {unit_code}"


def _notify(
    session: Session,
    rt: Runtime,
    writes: _Writes,
    definition: Definition,
    case: Case,
    timer: Timer,
    kind: str,
    level: int,
    target: str,
    target_unit_id: int,
    now: datetime,
) -> None:
    # what it says is stored as parameters, rendered for each recipient in their language when routed;
    # the words in the installation's language are kept alongside, for the log
    params = notification_params(session, definition, case, timer, kind, level)
    subject, body = render(params, rt.language)
    writes.notifications.append(
        {
            "case_id": case.id, "timer_id": timer.id, "kind": kind, "level": level, "target": target,
            "target_unit_id": target_unit_id, "subject": subject, "body": body, "params": params, "created_at": now,
            "status": "pending", "routed_at": None,
        }
    )


__all__ = ["Fired", "SweepReport", "sweep"]
