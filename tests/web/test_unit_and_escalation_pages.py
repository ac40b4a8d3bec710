"""The unit page and the escalations page: what each shows, and to whom."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from flask.testing import FlaskClient
from sqlalchemy import select

from qmsflow.engine import Database, Runtime
from qmsflow.engine.definitions import Target
from qmsflow.engine.lateness import TARGET_RANK
from qmsflow.engine.models import Timer, TimerFiring
from qmsflow.engine.permissions import SYSTEM
from qmsflow.engine.timers import timer_key
from qmsflow.engine.units import change_unit, record_succession
from tests.conftest import Province, local
from tests.web.cases_support import World


def _escalate(db: Database, rt: Runtime, case_id: int, target: Target, fired_on: date) -> int:
    """Put the case's first pending timer at the ladder level whose target is ``target``, fired on ``fired_on``."""
    with db.write() as session:
        timer = session.scalars(select(Timer).where(Timer.case_id == case_id, Timer.status == "pending").order_by(Timer.id)).first()
        assert timer is not None
        case = timer.case_id
        from qmsflow.engine.models import Case

        row = session.get(Case, case)
        assert row is not None
        ladder = rt.registry.get(row.workflow, row.workflow_version).ladder(timer_key(timer))
        level = next(i for i, rung in enumerate(ladder, start=1) if rung.target is target)
        timer.level = level
        session.add(TimerFiring(timer_id=timer.id, step=level, kind="escalation", level=level, outcome="fired",
                                scheduled_at=local(fired_on), fired_at=local(fired_on), fired_by="test"))
        return timer.id


def test_the_unit_page_shows_identity_history_contacts_cases_and_successions(
    signed_in: Callable[[str], FlaskClient], db: Database, rt: Runtime, province: Province, world: World
) -> None:
    with db.write() as session:
        change_unit(session, rt, SYSTEM, world.unit, on=date(2025, 9, 1), name="Trường THPT Thoại Ngọc Hầu (mới)")
        record_succession(session, rt, SYSTEM, province.units["SNV"].id, world.unit, on=date(2025, 10, 1))
    page = signed_in("lead").get(f"/units/{world.unit}").get_data(as_text=True)
    assert "Trường THPT Thoại Ngọc Hầu (mới)" in page  # the current name
    assert "Trường THPT Thoại Ngọc Hầu</li>" in page or "Trường THPT Thoại Ngọc Hầu (" in page  # the name before
    assert "Sở Giáo dục và Đào tạo" in page  # its parent
    assert "Head of THPT-TNH" in page and "iso@thpt-tnh.example" in page
    assert f'href="/cases/{world.case}"' in page
    assert "Sở Nội vụ" in page  # a predecessor
    assert "31/08/2025" in page  # the earlier name held until the day before the change


def test_a_supervisor_reads_its_units_and_gets_404_outside(signed_in: Callable[[str], FlaskClient], world: World) -> None:
    gddt = signed_in("gddt")
    assert gddt.get(f"/units/{world.unit}").status_code == 200
    assert gddt.get(f"/units/{world.other_unit}").status_code == 404
    assert gddt.get("/units/999999").status_code == 404


def test_escalations_by_level_with_age_and_body_for_the_lead_and_the_supervisor_in_scope(
    signed_in: Callable[[str], FlaskClient], db: Database, rt: Runtime, world: World
) -> None:
    today = rt.clock.now().date()
    # Friday 26 December 2025 to Monday 5 January 2026: 29/12, 30/12, 31/12, 2/1 and 5/1 are worked (1/1 is a holiday)
    _escalate(db, rt, world.case, Target.SUPERVISOR, today - timedelta(days=10))
    _escalate(db, rt, world.other_case, Target.LEAD, today - timedelta(days=3))
    lead = signed_in("lead").get("/escalations").get_data(as_text=True)
    assert lead.index("Sở Khoa học và Công nghệ (SKHCN)") < lead.index("Sở Giáo dục và Đào tạo (SGDDT)")  # higher level first
    assert f'href="/cases/{world.case}"' in lead and f'href="/cases/{world.other_case}"' in lead
    assert "26/12/2025" in lead
    gddt = signed_in("gddt").get("/escalations").get_data(as_text=True)
    assert f'href="/cases/{world.case}"' in gddt and f'href="/cases/{world.other_case}"' not in gddt
    assert signed_in("tnh").get("/escalations").status_code == 403


def test_the_escalations_age_counts_working_days(db: Database, rt: Runtime, world: World, province: Province) -> None:
    from qmsflow.engine.escalations import open_escalations

    _escalate(db, rt, world.case, Target.SUPERVISOR, date(2025, 12, 26))
    with db.read() as session:
        levels = open_escalations(session, rt, province.actors["lead"])
    assert [(level.rank, [e.case_id for e in level.rows]) for level in levels] == [(TARGET_RANK[Target.SUPERVISOR], [world.case])]
    row = levels[0].rows[0]
    assert row.escalated_on == date(2025, 12, 26)
    assert row.age_working_days == 5  # 29, 30, 31 December, 2 and 5 January (1 January is a holiday)
    assert row.body_code == "SGDDT"


def test_the_navigation_shows_escalations_to_the_lead_and_supervisors_only(signed_in: Callable[[str], FlaskClient]) -> None:
    assert 'href="/escalations"' in signed_in("lead").get("/inbox").get_data(as_text=True)
    assert 'href="/escalations"' in signed_in("gddt").get("/inbox").get_data(as_text=True)
    assert 'href="/escalations"' not in signed_in("tnh").get("/inbox").get_data(as_text=True)
