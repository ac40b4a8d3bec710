"""Scope is SQL: lists, counts and searches cost a constant number of statements, and see the right cases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import pytest
from sqlalchemy import event, select

from qmsflow.engine import SYSTEM, Actor, Database, FixedClock, NotFound, Role, Runtime, ValidationFailed, open_case
from qmsflow.engine.caselist import CaseFilter, count_cases, list_page
from qmsflow.engine.cases import get_case, list_cases
from qmsflow.engine.models import Case, Unit
from qmsflow.engine.permissions import Decision, decide, visible_units
from qmsflow.engine.units import UnitKind, create_unit, set_parent
from tests.conftest import Province, local

MOVE = date(2026, 3, 1)  # THCS Mỹ Thới moves from UBND phường Mỹ Thới to the Sở GD&ĐT


@contextmanager
def counting(db: Database) -> Iterator[list[str]]:
    """Collect every SQL statement the engine sends while the block runs."""
    statements: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", before)


def _open_all(db: Database, rt: Runtime, province: Province) -> dict[str, int]:
    with db.write() as session:
        return {
            code: open_case(session, rt, province.actors["lead"], session.merge(unit), "qms_lifecycle").id
            for code, unit in province.units.items()
        }


def _codes(db: Database, rt: Runtime, actor: Actor) -> set[str]:
    with db.read() as session:
        page = list_page(session, rt, actor, page_size=200)
        assert count_cases(session, rt, actor) == len(page.items)
        legacy = {c.unit.code for c in list_cases(session, rt, actor)}
        listed = {row.unit_code for row in page.items}
        assert listed == legacy
        return listed


ALL = {"91", "SKHCN", "SGDDT", "SNV", "30301", "THPT-TNH", "THCS-MT"}


def test_lists_equal_the_expected_sets_before_and_after_a_parent_change(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    ids = _open_all(db, rt, province)
    with db.write() as session:
        set_parent(session, session.merge(province.units["THCS-MT"]), session.merge(province.units["SGDDT"]), MOVE, rt=rt, actor=SYSTEM)
    a = province.actors
    expected_before = {
        "thcs": {"THCS-MT"},
        "tnh": {"THPT-TNH"},
        "mythoi": {"30301", "THCS-MT"},
        "gddt": {"SGDDT", "THPT-TNH"},
        "lead": ALL,
        "admin": ALL,
        "viewer": ALL,
    }
    expected_after = {**expected_before, "mythoi": {"30301"}, "gddt": {"SGDDT", "THPT-TNH", "THCS-MT"}}
    for day, expected in ((date(2026, 2, 27), expected_before), (MOVE, expected_after)):
        clock.set(local(day))
        for username, codes in expected.items():
            assert _codes(db, rt, a[username]) == codes, (day, username)
    clock.set(local(date(2026, 2, 27)))
    with db.read() as session:
        assert get_case(session, rt, a["mythoi"], ids["THCS-MT"]).id == ids["THCS-MT"]
        with pytest.raises(NotFound):
            get_case(session, rt, a["gddt"], ids["THCS-MT"])
    clock.set(local(MOVE))
    with db.read() as session:
        assert get_case(session, rt, a["gddt"], ids["THCS-MT"]).id == ids["THCS-MT"]
        with pytest.raises(NotFound):
            get_case(session, rt, a["mythoi"], ids["THCS-MT"])


def test_decide_without_a_query_agrees_with_the_sql_scope(db: Database, province: Province) -> None:
    # Pins the fast path of Scope.contains: a constant scope and the actor's own unit answer in
    # Python, any other unit by SQL, and both must say what the lists' WHERE clause says for every
    # actor and every unit.
    on = date(2026, 1, 5)
    with db.read() as session:
        units = {u.id for u in session.scalars(select(Unit))}
        for actor in [*province.actors.values(), Actor("nobody", Role.SUPERVISOR), Actor("v2", Role.VIEWER, province.units["SGDDT"].id)]:
            scope = visible_units(actor, on)
            in_sql = set(session.scalars(select(Unit.id).where(scope.covers(Unit.id))))
            with counting(db) as statements:
                in_python = {u for u in units if decide(session, actor, "view", unit_id=u, on=on) is Decision.ALLOWED}
            assert in_python == in_sql, actor.username
            asked = len(units - {scope.unit_id}) if scope.units is not None else 0
            assert len(statements) == asked, actor.username


def _supervised_province(db: Database, rt: Runtime, province: Province, start: int, stop: int) -> None:
    with db.write() as session:
        parent = session.merge(province.units["SGDDT"])
        lead = province.actors["lead"]
        for n in range(start, stop):
            unit = create_unit(
                session, code=f"THPT-{n:03d}", name=f"Trường THPT số {n}", kind=UnitKind.HIGH_SCHOOL.value,
                valid_from=date(2025, 7, 1), parent=parent, rt=rt, actor=SYSTEM,
            )
            open_case(session, rt, lead, unit, "qms_lifecycle")


def _measure(db: Database, rt: Runtime, actor: Actor) -> dict[str, tuple[int, int]]:
    """Statements and result size of each read a supervisor's pages make."""
    out = {}
    with db.read() as session:
        with counting(db) as s:
            page = list_page(session, rt, actor, page_size=50)
        out["list"] = (len(s), len(page.items))
        with counting(db) as s:
            n = count_cases(session, rt, actor)
        out["count"] = (len(s), n)
        with counting(db) as s:
            found = list_page(session, rt, actor, {"q": "thpt số", "late": "false", "escalated": "false"}, page_size=200)
        out["search"] = (len(s), len(found.items))
        with counting(db) as s:
            n_search = count_cases(session, rt, actor, CaseFilter(search="THPT-0", workflow="qms_lifecycle", state="planned"))
        out["count_search"] = (len(s), n_search)
    return out


def test_a_supervisor_of_100_units_reads_with_a_constant_number_of_statements(
    db: Database, rt: Runtime, province: Province
) -> None:
    _open_all(db, rt, province)
    gddt = province.actors["gddt"]
    _supervised_province(db, rt, province, 0, 10)
    at_10 = _measure(db, rt, gddt)
    _supervised_province(db, rt, province, 10, 100)
    at_100 = _measure(db, rt, gddt)
    # SGDDT itself, THPT-TNH and the new schools; search matches the 10 / 100 new schools only
    assert at_10 == {"list": (1, 12), "count": (1, 12), "search": (1, 10), "count_search": (1, 10)}
    assert at_100 == {"list": (1, 50), "count": (1, 102), "search": (1, 100), "count_search": (1, 100)}


def test_pages_follow_the_cursor_without_gaps_or_repeats(db: Database, rt: Runtime, province: Province) -> None:
    ids = _open_all(db, rt, province)
    seen: list[int] = []
    cursor = None
    with db.read() as session:
        while True:
            page = list_page(session, rt, province.actors["lead"], cursor=cursor, page_size=3)
            seen.extend(row.id for row in page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == sorted(ids.values(), reverse=True)
        first = list_page(session, rt, province.actors["lead"], page_size=3)
        with pytest.raises(ValidationFailed):  # a cursor made under other filters is refused
            list_page(session, rt, province.actors["lead"], {"workflow": "qms_lifecycle"}, cursor=first.next_cursor, page_size=3)


@pytest.mark.parametrize(
    ("filters", "cursor", "page_size", "field"),
    [
        ({"workflow": "payroll"}, None, 10, "workflow"),
        ({"workflow": "corrective_action", "state": "building"}, None, 10, "state"),
        ({"late": "maybe"}, None, 10, "late"),
        ({"escalated": 3}, None, 10, "escalated"),
        ({"unit": "SGDDT"}, None, 10, "unit"),
        ({"colour": "red"}, None, 10, "colour"),
        ({"q": "   "}, None, 10, "search"),
        ({"q": "x" * 101}, None, 10, "search"),
        ({}, "not-a-cursor", 10, "cursor"),
        ({}, "eyJ2IjoxLCJhZnRlciI6LTEsImYiOiIifQ", 10, "cursor"),
        ({}, None, 0, "page_size"),
        ({}, None, 201, "page_size"),
    ],
)
def test_bad_filters_cursors_and_page_sizes_are_refused_by_name(
    db: Database, rt: Runtime, province: Province, filters: dict[str, object], cursor: str | None, page_size: int, field: str
) -> None:
    _open_all(db, rt, province)
    with db.read() as session:
        before = session.scalars(select(Case.id).order_by(Case.id)).all()
        with pytest.raises(ValidationFailed) as info:
            list_page(session, rt, province.actors["lead"], filters, cursor=cursor, page_size=page_size)
        assert field in {p.field for p in info.value.problems}
        if cursor is None and page_size == 10:
            with pytest.raises(ValidationFailed):
                count_cases(session, rt, province.actors["lead"], filters)
        assert session.scalars(select(Case.id).order_by(Case.id)).all() == before
