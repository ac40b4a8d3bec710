"""APScheduler only wakes the work: a sweep every interval, the digest at 07:30 Vietnam time."""

from __future__ import annotations

import io
import logging
from datetime import date, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select

from qmsflow.engine import CalendarOverrides, Database, FixedClock, Runtime, WorkingCalendar, open_case, scheduling
from qmsflow.engine.clock import LOCAL_TZ
from qmsflow.engine.errors import CalendarMismatch
from qmsflow.engine.evidence import EvidenceStore, PurgeReport, stage
from qmsflow.engine.models import Notification
from qmsflow.engine.notifications import MailSettings
from qmsflow.engine.scheduling import SchedulerService
from qmsflow.engine.sweep import sweep
from tests.conftest import Province, allow_another_open_case, local
from tests.engine.test_evidence import png_bytes


def test_the_jobs_are_a_sweep_every_interval_and_a_digest_at_half_past_seven(db: Database, rt: Runtime) -> None:
    service = SchedulerService(db=db, rt=rt, mail=MailSettings(), interval_seconds=60, digest_time="07:30")
    scheduler = service._configure(BackgroundScheduler(timezone=LOCAL_TZ))
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"sweep", "digest"}
    assert jobs["sweep"].trigger.interval.total_seconds() == 60
    assert jobs["sweep"].max_instances == 1 and jobs["sweep"].coalesce
    fields = {f.name: str(f) for f in jobs["digest"].trigger.fields}
    assert (fields["hour"], fields["minute"]) == ("7", "30")
    assert str(jobs["digest"].trigger.timezone) == "Asia/Ho_Chi_Minh"


def test_one_wake_up_sweeps_on_the_runtime_clock_and_routes_the_outbox(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    with db.write() as session:
        open_case(session, rt, province.actors["lead"], session.merge(province.units["SNV"]), "qms_lifecycle")
    service = SchedulerService(db=db, rt=rt, mail=MailSettings())
    assert service.run_once().sweep.fired == []  # on 5 January nothing is due yet
    clock.set(local(date(2026, 2, 24), 0, 30))  # the plan was due Mon 23 Feb
    cycle = service.run_once()
    assert [(f.kind, f.level) for f in cycle.sweep.fired if f.outcome == "fired"] == [("due", 0), ("escalation", 1)]
    assert cycle.routed == 1
    assert service.run_once().sweep.fired == []


def test_given_an_evidence_store_the_scheduler_purges_expired_uploads_hourly(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, tmp_path: Path
) -> None:
    store = EvidenceStore(directory=tmp_path / "evidence", staging=timedelta(hours=24))
    service = SchedulerService(db=db, rt=rt, mail=MailSettings(), batch_size=2, evidence=store)
    jobs = {job.id: job for job in service._configure(BackgroundScheduler(timezone=LOCAL_TZ)).get_jobs()}
    assert jobs["evidence_purge"].trigger.interval.total_seconds() == 3600
    with db.write() as session:
        for i in range(3):  # more than one batch
            stage(session, store, province.actors["snv"], f"{i}.png", io.BytesIO(png_bytes()), clock.now())
    assert service.run_purge() == PurgeReport(0, 0)
    clock.advance(timedelta(hours=24))
    assert service.run_purge() == PurgeReport(3, 1)


def _open_lifecycles(db: Database, rt: Runtime, province: Province, count: int) -> None:
    with db.write() as session:
        unit = session.merge(province.units["SNV"])
        for _ in range(count):
            allow_another_open_case(session, unit)
            open_case(session, rt, province.actors["lead"], unit, "qms_lifecycle")


def test_a_backlog_of_notifications_is_routed_over_several_wake_ups_while_each_one_sweeps(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    # Regression: routing 40,000 notifications took one cycle 90 to 190 s, during which that
    # scheduler swept nothing. Now each wake-up routes at most route_batches_per_cycle batches.
    _open_lifecycles(db, rt, province, 5)
    service = SchedulerService(db=db, rt=rt, mail=MailSettings(), batch_size=2, route_batches_per_cycle=2)
    clock.set(local(date(2026, 2, 24), 0, 30))
    first = service.run_once()
    assert first.sweep.count == 10 and first.routed == 4  # every due step fired; two batches of two routed
    second = service.run_once()
    assert second.routed == 1
    with db.read() as session:
        assert session.scalar(select(func.count()).where(Notification.status == "pending")) == 0


def test_a_cycle_that_outlasts_its_interval_is_logged_once_not_every_time(
    db: Database, rt: Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = iter(range(0, 10_000, 100))  # each reading of the monotonic clock 100 s after the last
    monkeypatch.setattr(scheduling, "monotonic", lambda: next(ticks))
    service = SchedulerService(db=db, rt=rt, mail=MailSettings(), interval_seconds=60)
    for _ in range(3):
        service.run_once()
    overran = [r for r in caplog.records if "longer than the 60 s interval" in r.getMessage()]
    assert len(overran) == 1 and overran[0].levelno == logging.WARNING


def test_a_scheduler_on_another_calendar_fires_nothing_but_still_routes(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    _open_lifecycles(db, rt, province, 1)
    clock.set(local(date(2026, 2, 24), 0, 30))
    other = Runtime(
        registry=rt.registry, calendar=WorkingCalendar(CalendarOverrides.from_mapping({2026: {"days_off": ["2026-02-23"]}})),
        clock=clock, history_key=rt.history_key,
    )
    assert sweep(db, rt, clock.now()).count == 2  # a scheduler on the stored calendar fired the due step and level 1
    cycle = SchedulerService(db=db, rt=other, mail=MailSettings()).run_once()
    assert isinstance(cycle.refused, CalendarMismatch) and cycle.sweep.fired == []
    assert cycle.routed == 1  # what the other scheduler fired still reaches people
