"""The calendar overrides page: a day off added through it moves exactly the deadlines it previewed, once."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import select

from qmsflow.engine import Database, Runtime, calendar_store
from qmsflow.engine.models import AdminLogEntry, HistoryEntry, Timer
from tests.conftest import rows_committed
from tests.web.cases_support import World
from tests.web.conftest import post


def _pending(db: Database) -> dict[int, tuple[int, str]]:
    with db.read() as session:
        return {t.id: (t.case_id, t.due_date.isoformat()) for t in session.scalars(select(Timer).where(Timer.status == "pending"))}


def test_a_day_off_added_through_the_page_moves_the_previewed_deadlines_once(
    signed_in: Callable[[str], FlaskClient], db: Database, rt: Runtime, world: World
) -> None:
    admin = signed_in("admin")
    before = _pending(db)
    # a day off on the earliest pending due date moves at least that deadline (and any counted in working days across it)
    earliest = min(due for _case, due in before.values())
    typed = f"{earliest[8:10]}/{earliest[5:7]}/{earliest[:4]}"
    unchanged = rows_committed(db)
    page = post(admin, "/admin/calendar/preview", {"action": "add", "day": typed, "kind": "off", "name": "Nghỉ thử"},
                page="/admin/calendar/")
    assert page.status_code == 200
    assert rows_committed(db) == unchanged  # the preview stores nothing
    text = page.get_data(as_text=True)
    fingerprint = text.split('name="fingerprint" value="')[1].split('"')[0]
    done = post(admin, "/admin/calendar/apply", {"action": "add", "day": typed, "kind": "off", "name": "Nghỉ thử",
                                                 "fingerprint": fingerprint}, page="/admin/calendar/")
    assert done.status_code == 302
    after = _pending(db)
    moved = {tid for tid in before if before[tid] != after[tid]}
    assert moved and all(after[t][1] > before[t][1] for t in moved)
    for tid in moved:  # every moved deadline was in the preview, old and new
        assert f"{before[tid][1][8:10]}/{before[tid][1][5:7]}/{before[tid][1][:4]}" in text
    with db.read() as session:
        notes = session.scalars(select(HistoryEntry).where(HistoryEntry.kind == "deadline_moved")).all()
        assert sorted(n.data["timer"] for n in notes) == sorted(n.data["timer"] for n in notes)
        assert len(notes) == len(moved)  # once each
        assert {n.case_id for n in notes} == {after[t][0] for t in moved}
        assert calendar_store.stored(session).fingerprint == rt.calendar.fingerprint()  # this process follows at once
        actions = list(session.scalars(select(AdminLogEntry.action).order_by(AdminLogEntry.seq)))
    assert actions[-3:] == ["calendar.replan", "calendar.apply", "calendar.override.add"]
    # each moved case shows it in its timeline
    case_page = admin.get(f"/cases/{world.case}").get_data(as_text=True)
    assert "Dời hạn theo lịch làm việc" in case_page
    # applying the same change again is refused and moves nothing more
    again = post(admin, "/admin/calendar/apply", {"action": "add", "day": typed, "kind": "off", "fingerprint": fingerprint},
                 page="/admin/calendar/")
    assert again.status_code in (400, 409)
    assert _pending(db) == after
    assert typed in admin.get(f"/admin/calendar/?year={earliest[:4]}").get_data(as_text=True)


def test_another_process_follows_the_stored_calendar_after_an_admin_change(db: Database, rt: Runtime, world: World) -> None:
    from dataclasses import replace

    from qmsflow.engine.calendar import WorkingCalendar
    from qmsflow.engine.calendar_admin import CalendarFollower, OverrideChange, apply
    from qmsflow.engine.permissions import CONSOLE

    other = replace(rt, calendar=WorkingCalendar(rt.calendar.overrides))  # a second process on the same stored calendar
    follower = CalendarFollower(other)
    with db.read() as session:
        assert follower.sync(session) is False  # it agrees
    with db.read() as session:
        fingerprint = calendar_store.stored(session).fingerprint
    apply(db, rt, CONSOLE, OverrideChange("add", __import__("datetime").date(2026, 1, 6)), expected_fingerprint=fingerprint)
    with db.read() as session:
        assert follower.sync(session) is True
        calendar_store.check(session, other.calendar, planning=True)  # no longer refused
    stranger = CalendarFollower(replace(rt, calendar=WorkingCalendar()))  # started on another calendar: never agreed
    with db.read() as session:
        assert stranger.sync(session) is False
