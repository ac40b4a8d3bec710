"""APScheduler only wakes the work: a sweep every interval, the digest at 07:30 Vietnam time."""

from __future__ import annotations

import io
from datetime import date, timedelta
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

from qmsflow.engine import Database, FixedClock, Runtime, open_case
from qmsflow.engine.clock import LOCAL_TZ
from qmsflow.engine.evidence import EvidenceStore, PurgeReport, stage
from qmsflow.engine.notifications import MailSettings
from qmsflow.engine.scheduling import SchedulerService
from tests.conftest import Province, local
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
