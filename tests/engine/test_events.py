"""Integrators' event rows: one per occurrence, in the transaction of what they report, read in scope."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from qmsflow.engine import Actor, Database, FixedClock, GuardFailed, Runtime, ValidationFailed, advance, open_case
from qmsflow.engine.events import FeedEvent, events_after
from qmsflow.engine.models import Event
from qmsflow.engine.sweep import sweep
from tests.conftest import Province

PLAN = {"plan_number": "12/KH", "plan_approved_on": "2026-01-05"}


def _feed(db: Database, rt: Runtime, actor: Actor, after: int = 0, limit: int = 100, *, expect: int | None = None) -> list[FeedEvent]:
    """The feed as a new reader sees it. On PostgreSQL a transaction open anywhere on the server (other
    databases included) holds the feed back for a moment: with ``expect``, read again until that many show."""
    for _ in range(200):
        with db.read() as session:
            seen = events_after(session, rt, actor, after, limit)
        if expect is None or len(seen) >= expect:
            return seen
        time.sleep(0.05)
    return seen


def _types(db: Database) -> list[tuple[str, int]]:
    with db.read() as session:
        return [(e.type, e.case_id) for e in session.scalars(select(Event).order_by(Event.id))]


def test_opening_advancing_and_withdrawing_write_one_event_each_and_the_ending(
    db: Database, rt: Runtime, province: Province
) -> None:
    with db.write() as session:
        case = open_case(session, rt, province.actors["lead"], session.merge(province.units["THPT-TNH"]), "qms_lifecycle")
        advance(session, rt, province.actors["tnh"], case.id, "approve_plan", PLAN)
        advance(session, rt, province.actors["lead"], case.id, "withdraw", {"reason": "out of scope"})
        case_id = case.id
    assert _types(db) == [
        ("case.opened", case_id), ("case.advanced", case_id), ("case.advanced", case_id), ("case.withdrawn", case_id),
    ]
    with db.read() as session:
        advanced = session.scalars(select(Event).where(Event.type == "case.advanced").order_by(Event.id)).first()
        assert advanced is not None
        assert advanced.data == {
            "actor": "tnh", "version": 2, "state": "building", "event": "approve_plan",
            "from_state": "planned", "to_state": "building",
        }


def test_an_event_row_is_rolled_back_with_its_transaction(db: Database, rt: Runtime, province: Province) -> None:
    with db.write() as session:
        case_id = open_case(session, rt, province.actors["lead"], session.merge(province.units["THPT-TNH"]), "qms_lifecycle").id
    before = _types(db)
    with pytest.raises(RuntimeError):
        with db.write() as session:
            advance(session, rt, province.actors["tnh"], case_id, "approve_plan", PLAN)
            with db.read() as other:  # a second connection: nothing is visible before the commit
                assert [e.type for e in other.scalars(select(Event))] == [t for t, _ in before]
            raise RuntimeError("the caller fails after the transition")
    assert _types(db) == before  # read through a second connection


def test_a_refused_transition_leaves_no_event(db: Database, rt: Runtime, province: Province) -> None:
    with db.write() as session:
        case_id = open_case(session, rt, province.actors["lead"], session.merge(province.units["THPT-TNH"]), "qms_lifecycle").id
    before = _types(db)
    with db.write() as session:
        with pytest.raises(GuardFailed):
            advance(session, rt, province.actors["tnh"], case_id, "approve_plan", {})
    assert _types(db) == before


def test_the_feed_shows_only_events_in_the_readers_scope_after_a_cursor(
    db: Database, rt: Runtime, province: Province
) -> None:
    with db.write() as session:
        tnh = open_case(session, rt, province.actors["lead"], session.merge(province.units["THPT-TNH"]), "qms_lifecycle").id
        thcs = open_case(session, rt, province.actors["lead"], session.merge(province.units["THCS-MT"]), "qms_lifecycle").id
        advance(session, rt, province.actors["tnh"], tnh, "approve_plan", PLAN)
    mine = _feed(db, rt, province.actors["tnh"], expect=2)
    assert [(e.type, e.case_id) for e in mine] == [("case.opened", tnh), ("case.advanced", tnh)]
    assert [e.case_id for e in _feed(db, rt, province.actors["thcs"], expect=1)] == [thcs]
    everything = _feed(db, rt, province.actors["lead"], expect=3)
    assert len(everything) == 3
    assert _feed(db, rt, province.actors["lead"], everything[0].id, 1)[0].id == everything[1].id
    assert _feed(db, rt, province.actors["lead"], everything[-1].id) == []
    with db.read() as session:
        for bad in (-1, "1", True, None):
            with pytest.raises(ValidationFailed):
                events_after(session, rt, province.actors["lead"], bad, 10)
        with pytest.raises(ValidationFailed):
            events_after(session, rt, province.actors["lead"], 0, 0)


def test_reminders_and_escalations_the_sweep_fires_are_events(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    with db.write() as session:
        case_id = open_case(session, rt, province.actors["lead"], session.merge(province.units["THPT-TNH"]), "qms_lifecycle").id
    for _ in range(40):
        clock.advance(timedelta(days=7))
        sweep(db, rt)
    types = {t for t, c in _types(db) if c == case_id}
    assert {"reminder.fired", "escalation.fired"} <= types


def test_on_postgresql_the_feed_holds_back_an_event_an_open_transaction_may_precede(
    db: Database, backend: str, rt: Runtime, province: Province
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: ids commit in order")
    with db.write() as session:
        first = open_case(session, rt, province.actors["lead"], session.merge(province.units["THPT-TNH"]), "qms_lifecycle").id
    assert [e.type for e in _feed(db, rt, province.actors["lead"], expect=1)] == ["case.opened"]
    with db.write() as slow:  # holds a lower event id, uncommitted, while another transaction commits a higher one
        advance(slow, rt, province.actors["tnh"], first, "approve_plan", PLAN)
        with db.write() as quick:
            open_case(quick, rt, province.actors["lead"], quick.merge(province.units["THCS-MT"]), "qms_lifecycle")
        # the later commit waits for the open transaction
        assert [e.type for e in _feed(db, rt, province.actors["lead"])] == ["case.opened"]
    assert [e.type for e in _feed(db, rt, province.actors["lead"], expect=3)] == ["case.opened", "case.advanced", "case.opened"]
