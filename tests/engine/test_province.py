"""The province as of a date: figures from the history, equal to numbers worked out by hand, and equal to their lists."""

from __future__ import annotations

from datetime import date

import pytest

from qmsflow.engine import SYSTEM, Database, FixedClock, Runtime, advance, open_case
from qmsflow.engine.errors import ValidationFailed
from qmsflow.engine.models import Case
from qmsflow.engine.province import Summary, UnitFilter, list_units, province_summary
from qmsflow.engine.units import create_unit
from tests.conftest import Province, local
from tests.engine.test_lifecycle import LIFECYCLE

FIRST, SECOND, THIRD = date(2026, 1, 31), date(2026, 3, 31), date(2026, 5, 31)


@pytest.fixture
def history(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> dict[str, int]:
    """THPT-TNH walks to "maintaining" by 18/05/2026; THCS-MT stays planned (late from February); a new
    school, Trường THCS Long Xuyên, exists from 01/03/2026 and is planned from 02/03 (late from April)."""
    ids = {}
    with db.write() as session:
        tnh = open_case(session, rt, province.actors["lead"], province.units["THPT-TNH"], "qms_lifecycle")
        open_case(session, rt, province.actors["lead"], province.units["THCS-MT"], "qms_lifecycle")
        ids["tnh_case"] = tnh.id
    for day, user, event, data, _expected in LIFECYCLE:
        if day > date(2026, 5, 18):
            break
        clock.set(local(day))
        with db.write() as session:
            case = session.get(Case, ids["tnh_case"])
            assert case is not None
            advance(session, rt, province.actors[user], case.id, event, data, expected_version=case.version)
        if day == date(2026, 2, 3):  # between two steps: the new school is registered and opened
            clock.set(local(date(2026, 2, 25)))
            with db.write() as session:
                lx = create_unit(
                    session, code="THCS-LX", name="Trường THCS Long Xuyên", kind="lower_secondary_school",
                    valid_from=date(2026, 3, 1), parent=province.units["30301"], rt=rt, actor=SYSTEM,
                )
                ids["lx"] = lx.id
            clock.set(local(date(2026, 3, 2)))
            with db.write() as session:
                lx_unit = session.get(type(province.units["30301"]), ids["lx"])
                assert lx_unit is not None
                open_case(session, rt, province.actors["lead"], lx_unit, "qms_lifecycle")
    clock.set(local(date(2026, 6, 10)))
    return ids


def _stages(summary: Summary) -> dict[str, int]:
    return {f.key: f.count for f in summary.by_stage if f.count}


# Worked out by hand from the story above: 7 units from 2025, the new school from 01/03/2026.
EXPECTED = {
    FIRST: {"units": 7, "stages": {"none": 5, "planned": 1, "building": 1}, "late": 0, "ever": 0},
    SECOND: {"units": 8, "stages": {"none": 5, "planned": 2, "applying": 1}, "late": 1, "ever": 0},
    THIRD: {"units": 8, "stages": {"none": 5, "planned": 2, "maintaining": 1}, "late": 2, "ever": 1},
}


@pytest.mark.parametrize("day", [FIRST, SECOND, THIRD])
def test_the_figures_as_of_three_days_are_the_hand_counted_ones(
    db: Database, rt: Runtime, province: Province, history: dict[str, int], day: date
) -> None:
    expected = EXPECTED[day]
    with db.read() as session:
        summary = province_summary(session, rt, province.actors["lead"], as_of=day)
        assert summary.units.count == expected["units"]
        assert _stages(summary) == expected["stages"]
        assert summary.late.count == expected["late"]
        assert summary.ever_announced.count == expected["ever"]
        months = {f.key: f.count for f in summary.announced_by_month}
        assert len(months) == 24 and max(months) == day.strftime("%Y-%m")
        assert sum(months.values()) == (1 if day == THIRD else 0) and months.get("2026-05", 0) == sum(months.values())
        # every figure's list has the figure's count
        figures = [summary.units, summary.late, summary.ever_announced, summary.open_ca, *summary.announced_by_month, *summary.by_stage,
                   *summary.escalation_levels, *summary.due_within]
        figures += [f for fs in summary.by_kind.values() for f in fs] + [f for fs in summary.by_parent.values() for f in fs]
        for figure in figures:
            page = list_units(session, rt, province.actors["lead"], UnitFilter.parse(figure.filter), page_size=1000)
            assert page.total == figure.count == len(page.rows), figure
            assert page.as_of == day


def test_the_new_school_is_absent_before_it_existed_and_found_by_its_folded_name(
    db: Database, rt: Runtime, province: Province, history: dict[str, int]
) -> None:
    with db.read() as session:
        lead = province.actors["lead"]
        assert list_units(session, rt, lead, UnitFilter(q="long xuyen", as_of=FIRST)).total == 0
        page = list_units(session, rt, lead, UnitFilter(q="long xuyen", as_of=SECOND))
        assert [r.name for r in page.rows] == ["Trường THCS Long Xuyên"] and page.rows[0].stage == "planned"
        assert page.rows[0].parent_name == "UBND phường Mỹ Thới"


def test_a_supervisor_counts_its_subtree_of_the_day(db: Database, rt: Runtime, province: Province, history: dict[str, int]) -> None:
    with db.read() as session:
        mythoi = province.actors["mythoi"]
        assert province_summary(session, rt, mythoi, as_of=FIRST).units.count == 2
        assert province_summary(session, rt, mythoi, as_of=SECOND).units.count == 3
        assert province_summary(session, rt, province.actors["thcs"], as_of=SECOND).units.count == 1


@pytest.mark.parametrize(
    "params", [{"stage": "nowhere"}, {"late": "yes"}, {"as_of": "31/12/2025"}, {"level": "9"}, {"announced": "2026-13"}, {"bogus": "1"}]
)
def test_bad_filters_are_refused_by_name(params: dict[str, str]) -> None:
    with pytest.raises(ValidationFailed) as caught:
        UnitFilter.parse(params)
    assert [p.field for p in caught.value.problems] == list(params)


def test_the_dashboard_reads_the_status_once_for_its_totals_and_announcements_through_their_index(
    db: Database, rt: Runtime, province: Province, history: dict[str, int]
) -> None:
    # bench/province_pages.py at 5,000 units: the totals ran every correlated subquery once per reference
    # (and PostgreSQL spent 7 s compiling them with JIT); the announcements walked every history row
    from sqlalchemy import event, text

    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        with db.read() as session:
            province_summary(session, rt, province.actors["lead"], as_of=THIRD)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert len(statements) == 6
    assert "unit_status AS MATERIALIZED" in statements[0]
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "sqlite":
            plan = " ".join(r[3] for r in conn.execute(text(
                "EXPLAIN QUERY PLAN SELECT count(*) FROM history WHERE event = 'announce' AND at >= '2026-01-01' AND at < '2027-01-01'"
            )))
            assert "ix_history_event_at" in plan
        else:
            assert conn.execute(text("SHOW jit")).scalar() == "off"
