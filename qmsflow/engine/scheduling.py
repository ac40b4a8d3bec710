"""APScheduler drives the sweep; it never holds the truth (timers are rows). The only APScheduler import.

Jobs: the sweep with outbox routing, email sending and the webhook dispatcher, every ``interval_seconds`` (one run at a time,
missed runs coalesced), the daily digest at ``digest_time`` Vietnam time, and, given an evidence
store, an hourly purge of expired staged uploads. Any number of these
may run against PostgreSQL; on SQLite they queue on the database write lock.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass, field, replace
from datetime import time
from time import monotonic  # how long a cycle took, never what time it is (that is rt.clock)
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .clock import LOCAL_TZ, SystemClock
from .db import Database
from .errors import CalendarMismatch
from .evidence import EvidenceStore, PurgeReport, purge_expired, purge_orphans
from .notifications import Mailer, MailSettings, queue_digests, route, send_pending
from .runtime import Runtime
from .sweep import SweepReport, sweep
from .webhooks import WebhookSettings, dispatch

log = logging.getLogger(__name__)


def worker_name() -> str:
    """A name for this process in firing records: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Cycle:
    """What one wake-up of the scheduler did."""

    sweep: SweepReport
    refused: CalendarMismatch | None = None  # the sweep refused: this process's calendar is not the stored one
    routed: int = 0
    sent: int = 0
    send_failed: int = 0
    webhooks_delivered: int = 0
    webhooks_failed: int = 0


@dataclass
class SchedulerService:
    """The sweep, routing and mail jobs, and the APScheduler that wakes them."""

    db: Database
    rt: Runtime
    mail: MailSettings
    mailer: Mailer | None = None
    interval_seconds: int = 60
    batch_size: int = 200
    digest_time: str = "07:30"
    worker: str = field(default_factory=worker_name)
    exit_when_idle: bool = False
    evidence: EvidenceStore | None = None
    route_batches_per_cycle: int = 10
    webhooks: WebhookSettings | None = None  # None: no webhook dispatcher in this process
    cycles: int = 0
    _scheduler: BaseScheduler | None = None
    _overran: bool = False
    _follower: Any = None
    _started_on: str | None = None  # the calendar fingerprint of this process's first successful sweep

    def run_once(self) -> Cycle:
        """Sweep due timers, route the outbox, send due email; the unit of work each wake-up runs.

        A process whose calendar is not the stored one fires nothing (``CalendarMismatch``, logged once
        by calendar_store) but still routes and sends what others fired. Routing is bounded to
        ``route_batches_per_cycle`` batches, so a backlog of notifications is worked off over several
        wake-ups and never holds the sweep back; a cycle that outlasts its interval is logged once.
        """
        started = monotonic()
        now = self.rt.clock.now()
        try:
            report = sweep(self.db, self.rt, now, batch_size=self.batch_size, worker=self.worker)
        except CalendarMismatch as exc:
            # an administrator changed the stored calendar: follow it and sweep on it (engine/calendar_admin.py)
            report = SweepReport()
            cycle = Cycle(sweep=report, refused=exc)
            if self._follow_calendar():
                report = sweep(self.db, self.rt, now, batch_size=self.batch_size, worker=self.worker)
                cycle = Cycle(sweep=report)
        else:
            cycle = Cycle(sweep=report)
            self._started_on = self._started_on or self.rt.calendar.fingerprint()
        cycle.routed = route(self.db, now, self.mail, batch_size=self.batch_size, max_batches=self.route_batches_per_cycle,
            language=self.rt.language,
        )
        if self.mail.enabled and self.mailer is not None:
            cycle.sent, cycle.send_failed = send_pending(self.db, now, self.mailer, self.mail)
        if self.webhooks is not None:  # bounded per wake-up: webhooks.batches_per_cycle (engine/webhooks.py)
            sender = self.mail.sender if self.mail.enabled else ""
            _, cycle.webhooks_delivered, cycle.webhooks_failed = dispatch(
                self.db, self.rt, self.webhooks, mail_sender=sender, mail_domain=self.mail.domain,
            )
        self.cycles += 1
        if report.fired or cycle.routed or cycle.sent:
            log.info("%s: fired %s steps, routed %s, sent %s", self.worker, report.count, cycle.routed, cycle.sent)
        self._note_duration(monotonic() - started)
        if self.exit_when_idle and not report.fired and not report.failed_cases and self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        return cycle

    def _follow_calendar(self) -> bool:
        """Reload the stored calendar if this process was on it before it changed; whether it did."""
        from .calendar_admin import CalendarFollower

        if self._follower is None:
            self._follower = CalendarFollower(self.rt)
            self._follower.agreed = self._started_on
        with self.db.read() as session:
            return self._follower.sync(session)

    def _note_duration(self, seconds: float) -> None:
        """Say once that cycles outlast the interval (the next wake-ups are coalesced), and once when they no longer do."""
        over = seconds > self.interval_seconds
        if over and not self._overran:
            log.warning(
                "%s: a cycle took %.0f s, longer than the %s s interval; wake-ups are coalesced until it catches up",
                self.worker, seconds, self.interval_seconds,
            )
        elif not over and self._overran:
            log.info("%s: cycles fit in the %s s interval again", self.worker, self.interval_seconds)
        self._overran = over

    def run_digest(self) -> int:
        """Queue the morning digest emails."""
        return queue_digests(self.db, self.rt.clock.now(), self.mail, self.rt.language)

    def run_purge(self) -> PurgeReport | None:
        """Purge expired staged evidence uploads, one bounded batch per transaction; None without a store."""
        if self.evidence is None:
            return None
        total = PurgeReport(0, 0)
        while True:
            with self.db.write() as session:
                report = purge_expired(session, self.evidence, self.rt.clock.now(), limit=self.batch_size)
            total = PurgeReport(total.uploads + report.uploads, total.files + report.files)
            if report.uploads < self.batch_size:
                break
        with self.db.write() as session:  # one walk of the store per purge, not one per batch
            total = replace(total, orphans=purge_orphans(session, self.evidence, self.rt.clock.now(), limit=self.batch_size))
        if total.uploads or total.orphans:
            log.info(
                "%s: purged %s expired uploads, %s files, %s files of refused requests",
                self.worker, total.uploads, total.files, total.orphans,
            )
        return total

    def _configure(self, scheduler: BaseScheduler) -> BaseScheduler:
        hour, minute = (int(x) for x in self.digest_time.split(":"))
        time(hour, minute)  # refuse a malformed digest time at start, not at 07:30
        scheduler.add_job(
            self._safe_cycle, IntervalTrigger(seconds=self.interval_seconds, timezone=LOCAL_TZ), id="sweep",
            max_instances=1, coalesce=True, next_run_time=SystemClock().now(),  # APScheduler wakes on the wall clock; the work reads rt.clock
        )
        scheduler.add_job(
            self.run_digest, CronTrigger(hour=hour, minute=minute, timezone=LOCAL_TZ), id="digest",
            max_instances=1, coalesce=True, misfire_grace_time=3600,
        )
        if self.evidence is not None:
            scheduler.add_job(
                self.run_purge, IntervalTrigger(hours=1, timezone=LOCAL_TZ), id="evidence_purge",
                max_instances=1, coalesce=True,
            )
        self._scheduler = scheduler
        return scheduler

    def _safe_cycle(self) -> None:
        try:
            self.run_once()
        except Exception:  # the next wake-up retries; a database outage must not kill the scheduler
            log.exception("%s: sweep cycle failed", self.worker)

    def run_forever(self) -> None:
        """Run in the foreground until interrupted (``qmsflow scheduler``): Ctrl-C or SIGTERM stops it cleanly.

        The signal asks the scheduler to shut down instead of raising KeyboardInterrupt wherever the
        main thread happens to be: inside APScheduler's job submission that would be logged with a
        traceback (the README test stops the scheduler right after its start line and saw it).
        """
        scheduler = self._configure(BlockingScheduler(timezone=LOCAL_TZ))

        # From another thread: shutdown() takes the scheduler's locks, which the interrupted main
        # thread may hold. Before the scheduler runs there is nothing to shut down: stop at once.
        def stop(signum: int, frame: object) -> None:
            if not scheduler.running:
                raise KeyboardInterrupt
            threading.Thread(target=scheduler.shutdown, kwargs={"wait": False}, daemon=True).start()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            scheduler.start()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def start_background(self) -> None:
        """Run in a background thread (one per ``qmsflow serve`` process)."""
        self._configure(BackgroundScheduler(timezone=LOCAL_TZ, daemon=True)).start()

    def shutdown(self) -> None:
        """Stop the scheduler if it runs."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)


__all__ = ["Cycle", "SchedulerService", "worker_name"]
