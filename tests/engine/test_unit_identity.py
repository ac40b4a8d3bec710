"""A unit is an identity: its name, code, kind, parent and lead flag are dated, and successors read
their predecessors' cases, as in the 1 July 2025 reorganisation of An Giang's communes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest
from sqlalchemy import select, text

from qmsflow.engine import (
    SYSTEM,
    Actor,
    Conflict,
    Database,
    FixedClock,
    NotFound,
    PeriodOverlap,
    Runtime,
    Target,
    ValidationFailed,
    open_case,
)
from qmsflow.engine.caselist import list_page
from qmsflow.engine.cases import get_case
from qmsflow.engine.models import AdminLogEntry, Case, Unit
from qmsflow.engine.permissions import visible_units
from qmsflow.engine.units import (
    UnitKind,
    change_unit,
    create_unit,
    end_unit,
    escalation_body,
    lead_unit,
    parent_id,
    record_succession,
    unit_by_code,
    version_on,
)
from qmsflow.engine.users import create_user
from tests.conftest import Province, got, local

MERGER = date(2025, 7, 1)  # Resolution 1654/NQ-UBTVQH15: the new communes of An Giang
BEFORE = date(2025, 6, 30)
COMMUNE = UnitKind.COMMUNE_PC.value


def test_a_rename_and_a_move_keep_the_unit_and_its_cases(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> None:
    school = province.units["THCS-MT"]
    with db.write() as session:
        case_id = open_case(session, rt, province.actors["lead"], session.merge(school), "qms_lifecycle").id
    change_day = date(2026, 3, 2)
    with db.write() as session:
        changed = change_unit(
            session, rt, SYSTEM, school.id, on=change_day, name="Trường THCS Mỹ Thới (mới)", code="THCS-MT2",
            parent_id=province.units["SGDDT"].id,
        )
        assert changed.id == school.id and changed.name == "Trường THCS Mỹ Thới (mới)" and changed.code == "THCS-MT2"
    with db.read() as session:
        assert session.get(Case, case_id).unit_id == school.id  # type: ignore[union-attr]
        assert unit_by_code(session, "THCS-MT", date(2026, 3, 1)).id == school.id
        assert unit_by_code(session, "THCS-MT2", change_day).id == school.id
        with pytest.raises(NotFound):
            unit_by_code(session, "THCS-MT", change_day)
        old, new = version_on(session, school.id, date(2026, 3, 1)), version_on(session, school.id, change_day)
        assert old is not None and new is not None
        assert (old.name, old.valid_to, new.name, new.valid_from) == ("Trường THCS Mỹ Thới", change_day, "Trường THCS Mỹ Thới (mới)", change_day)
        assert old.kind == new.kind == UnitKind.LOWER_SECONDARY.value
        assert parent_id(session, school.id, date(2026, 3, 1)) == province.units["30301"].id
        assert parent_id(session, school.id, change_day) == province.units["SGDDT"].id
        logged = session.scalars(select(AdminLogEntry).where(AdminLogEntry.action == "unit.change")).one()
        assert logged.before["name"] == "Trường THCS Mỹ Thới" and logged.after["code"] == "THCS-MT2"  # type: ignore[index]
        assert logged.after["parent_id"] == province.units["SGDDT"].id  # type: ignore[index]
    # the officer of the renamed school still reads its case, before and after the change
    for day in (date(2026, 3, 1), change_day):
        clock.set(local(day))
        with db.read() as session:
            assert get_case(session, rt, province.actors["thcs"], case_id).id == case_id


def test_a_second_change_on_one_day_corrects_that_days_version(db: Database, rt: Runtime, province: Province) -> None:
    snv = province.units["SNV"]
    with db.write() as session:
        change_unit(session, rt, SYSTEM, snv.id, on=date(2026, 2, 2), name="Sở Nội vụ tỉnh An Giang")
        change_unit(session, rt, SYSTEM, snv.id, on=date(2026, 2, 2), name="Sở Nội vụ An Giang")
        assert [v.name for v in session.get(Unit, snv.id).versions] == ["Sở Nội vụ", "Sở Nội vụ An Giang"]  # type: ignore[union-attr]


@dataclass
class Merger:
    """Phường Mỹ Hòa (30307) and Phường Mỹ Bình (30280) of Long Xuyên merged into Phường Long Xuyên (30307)."""

    district: Unit
    my_hoa: Unit
    my_binh: Unit
    school: Unit
    long_xuyen: Unit
    cases: dict[str, int]


def _merge(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> Merger:
    old_day = date(2008, 1, 1)
    with db.write() as session:
        district = create_unit(session, code="883", name="UBND thành phố Long Xuyên", kind=UnitKind.DISTRICT_PC.value,
                               valid_from=old_day, rt=rt, actor=SYSTEM)
        my_hoa = create_unit(session, code="30307", name="UBND phường Mỹ Hòa", kind=COMMUNE, valid_from=old_day,
                             parent=district, rt=rt, actor=SYSTEM)
        my_binh = create_unit(session, code="30280", name="UBND phường Mỹ Bình", kind=COMMUNE, valid_from=old_day,
                              parent=district, rt=rt, actor=SYSTEM)
        school = create_unit(session, code="THCS-MH", name="Trường THCS Mỹ Hòa", kind=UnitKind.LOWER_SECONDARY.value,
                             valid_from=old_day, parent=my_hoa, rt=rt, actor=SYSTEM)
    clock.set(local(date(2025, 6, 2)))
    lead = province.actors["lead"]
    with db.write() as session:
        cases = {u.code: open_case(session, rt, lead, session.merge(u), "qms_lifecycle").id for u in (my_hoa, my_binh, school)}
    with db.write() as session:
        with pytest.raises(Conflict):  # 30307 is still Mỹ Hòa's until Mỹ Hòa ends
            create_unit(session, code="30307", name="UBND phường Long Xuyên", kind=COMMUNE, valid_from=MERGER,
                        parent=session.merge(province.units["91"]), rt=rt, actor=SYSTEM)
    with db.write() as session:
        end_unit(session, rt, SYSTEM, my_hoa.id, on=MERGER)
        end_unit(session, rt, SYSTEM, district.id, on=MERGER)  # the district level was abolished
        long_xuyen = create_unit(session, code="30307", name="UBND phường Long Xuyên", kind=COMMUNE, valid_from=MERGER,
                                 parent=session.merge(province.units["91"]), rt=rt, actor=SYSTEM)
        record_succession(session, rt, SYSTEM, my_hoa.id, long_xuyen.id, on=MERGER)
        record_succession(session, rt, SYSTEM, my_binh.id, long_xuyen.id, on=MERGER)  # ends Mỹ Bình too
    clock.set(local(date(2026, 1, 5)))
    with db.write() as session:
        cases["LX"] = open_case(session, rt, lead, got(session, Unit, long_xuyen.id), "qms_lifecycle").id
        for username, role, unit in (("lx", "unit_officer", long_xuyen), ("lx.ubnd", "supervisor", long_xuyen),
                                     ("mh", "unit_officer", my_hoa), ("tp.lx", "supervisor", district)):
            user = create_user(session, username=username, role=role, unit=session.get(Unit, unit.id), now=clock.now(), rt=rt, actor=SYSTEM)
            province.actors[username] = Actor.of(user)
    return Merger(district, my_hoa, my_binh, school, long_xuyen, cases)


def test_code_30307_names_two_different_units_before_and_after_the_merger(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    m = _merge(db, rt, clock, province)
    with db.read() as session:
        assert unit_by_code(session, "30307", BEFORE).id == m.my_hoa.id
        assert unit_by_code(session, "30307", MERGER).id == m.long_xuyen.id
        assert m.my_hoa.id != m.long_xuyen.id
        assert unit_by_code(session, "30280", BEFORE).id == m.my_binh.id
        with pytest.raises(NotFound):  # Mỹ Bình ended with its succession
            unit_by_code(session, "30280", MERGER)
        my_hoa = session.get(Unit, m.my_hoa.id)
        assert my_hoa is not None and my_hoa.valid_to == MERGER and my_hoa.name == "UBND phường Mỹ Hòa"
        assert parent_id(session, m.my_hoa.id, BEFORE) == m.district.id
        assert parent_id(session, m.my_hoa.id, MERGER) is None


def _visible_codes(db: Database, rt: Runtime, actor: Actor) -> set[str]:
    with db.read() as session:
        return {row.unit_code for row in list_page(session, rt, actor, page_size=200).items}


def test_a_successors_officer_reads_the_predecessors_cases(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> None:
    m = _merge(db, rt, clock, province)
    a = province.actors
    # The officer sees its own unit and the two communes it took over from, not their schools;
    # the new commune's supervisor (and the province's lead) also the school as it stood on 30 June.
    assert _visible_codes(db, rt, a["lx"]) == {"30307", "30280"}
    with db.read() as session:
        for code in ("30307", "30280", "LX"):
            assert get_case(session, rt, a["lx"], m.cases[code]).id == m.cases[code]
        with pytest.raises(NotFound):
            get_case(session, rt, a["lx"], m.cases["THCS-MH"])
        with pytest.raises(NotFound):  # a predecessor's officer does not read its successor's cases
            get_case(session, rt, a["mh"], m.cases["LX"])
        assert get_case(session, rt, a["mh"], m.cases["30307"]).id == m.cases["30307"]
        lx_cases = set(session.scalars(select(Case.id).where(visible_units(a["lx.ubnd"], MERGER).covers(Case.unit_id))))
        assert lx_cases == {m.cases["30307"], m.cases["30280"], m.cases["THCS-MH"], m.cases["LX"]}
        # on 30 June the successor did not exist yet: it sees nothing of its predecessors
        assert not set(session.scalars(select(Case.id).where(visible_units(a["lx"], BEFORE).covers(Case.unit_id)))) - {m.cases["LX"]}
        # the abolished district's supervisor saw its communes on 30 June, and nothing after
        before = set(session.scalars(select(Case.id).where(visible_units(a["tp.lx"], BEFORE).covers(Case.unit_id))))
        assert before == {m.cases["30307"], m.cases["30280"], m.cases["THCS-MH"]}
        assert not set(session.scalars(select(Case.id).where(visible_units(a["tp.lx"], MERGER).covers(Case.unit_id))))
    # the province's supervisor reaches the old school through Long Xuyên's predecessors
    supervisor_91 = Actor("ubnd91", province.actors["gddt"].role, province.units["91"].id)
    with db.read() as session:
        seen = set(session.scalars(select(Case.unit_id).where(visible_units(supervisor_91, MERGER).covers(Case.unit_id))))
    assert {m.my_hoa.id, m.my_binh.id, m.school.id, m.long_xuyen.id} <= seen


def test_successions_are_followed_transitively_and_only_from_their_date(db: Database, rt: Runtime, province: Province) -> None:
    with db.write() as session:
        first = create_unit(session, code="T-A", name="Đơn vị thử A", kind=COMMUNE, valid_from=date(2010, 1, 1), rt=rt, actor=SYSTEM)
        second = create_unit(session, code="T-B", name="Đơn vị thử B", kind=COMMUNE, valid_from=date(2015, 1, 1), rt=rt, actor=SYSTEM)
        third = create_unit(session, code="T-C", name="Đơn vị thử C", kind=COMMUNE, valid_from=date(2020, 1, 1), rt=rt, actor=SYSTEM)
        record_succession(session, rt, SYSTEM, first.id, second.id, on=date(2015, 1, 1))
        record_succession(session, rt, SYSTEM, second.id, third.id, on=date(2020, 1, 1))
        with pytest.raises(Conflict):
            record_succession(session, rt, SYSTEM, second.id, third.id, on=date(2020, 1, 1))
        with pytest.raises(ValidationFailed):  # the successor must exist on the day
            record_succession(session, rt, SYSTEM, first.id, third.id, on=date(2015, 1, 1))
        ids = {u.id: u.code for u in (first, second, third)}
        officer = Actor("t-c", province.actors["thcs"].role, third.id)

        def seen(on: date) -> set[str]:
            return {ids[i] for i in session.scalars(select(Unit.id).where(visible_units(officer, on).covers(Unit.id))) if i in ids}

        assert seen(date(2019, 12, 31)) == {"T-C"}  # not yet in charge: only its own unit
        assert seen(date(2020, 1, 1)) == {"T-A", "T-B", "T-C"}


def test_bad_changes_are_refused_by_name_and_change_nothing(db: Database, rt: Runtime, province: Province) -> None:
    snv, sgddt = province.units["SNV"], province.units["SGDDT"]
    with db.write() as session:
        with pytest.raises(ValidationFailed) as info:
            change_unit(session, rt, SYSTEM, snv.id, on=date(2026, 2, 2), name=" ", kind="castle", parent_id=999)
        assert {p.field for p in info.value.problems} == {"name", "kind", "parent_id"}
        with pytest.raises(ValidationFailed):  # before the unit existed
            change_unit(session, rt, SYSTEM, snv.id, on=date(2020, 1, 1), name="Sở Nội vụ cũ")
        with pytest.raises(NotFound):
            change_unit(session, rt, SYSTEM, 999, on=date(2026, 2, 2), name="Không có")
        with pytest.raises(Conflict):  # the code is the Sở GD&ĐT's
            change_unit(session, rt, SYSTEM, snv.id, on=date(2026, 2, 2), code="SGDDT")
        with pytest.raises(Conflict):  # the Sở KH&CN is the lead unit
            change_unit(session, rt, SYSTEM, sgddt.id, on=date(2026, 2, 2), is_lead=True)
        assert [v.name for v in session.get(Unit, snv.id).versions] == ["Sở Nội vụ"]  # type: ignore[union-attr]
        # handing the lead over on a day is two changes: the old lead stops, the new one starts
        change_unit(session, rt, SYSTEM, province.units["SKHCN"].id, on=date(2026, 2, 2), is_lead=False)
        change_unit(session, rt, SYSTEM, sgddt.id, on=date(2026, 2, 2), is_lead=True)
        assert lead_unit(session, date(2026, 2, 1)).id == province.units["SKHCN"].id  # type: ignore[union-attr]
        assert lead_unit(session, date(2026, 2, 2)).id == sgddt.id  # type: ignore[union-attr]
        assert escalation_body(session, snv.id, Target.LEAD, date(2026, 2, 2)).unit_id == sgddt.id


# ------------------------------------------------------------------ the database's own constraints

_UNITS = "INSERT INTO units (id, valid_from) VALUES (:id, '2020-01-01')"
_VERSION = (
    "INSERT INTO unit_versions (unit_id, valid_from, valid_to, code, name, kind, is_lead) "
    "VALUES (:unit, :start, :end, :code, 'Đơn vị', 'other', :lead)"
)
_PARENT = "INSERT INTO unit_parents (unit_id, parent_id, valid_from, valid_to) VALUES (:unit, :parent, :start, :end)"


def _raw(db: Database, statement: str, **values: object) -> None:
    with db.write() as session:
        session.execute(text(statement), values)


@pytest.fixture
def raw_units(db: Database) -> Database:
    """Three bare units, each with one version from 2020 to 2025-07-01, unit 1 the lead; unit 2 under
    unit 1; and unit 4 without a version yet."""
    with db.write() as session:
        session.execute(text(_UNITS), {"id": 4})
        for n in (1, 2, 3):
            session.execute(text(_UNITS), {"id": n})
            session.execute(text(_VERSION), {"unit": n, "start": "2020-01-01", "end": "2025-07-01", "code": f"C{n}", "lead": n == 1})
        session.execute(text(_PARENT), {"unit": 2, "parent": 1, "start": "2020-01-01", "end": "2025-07-01"})
    return db


@pytest.mark.parametrize(
    ("statement", "values", "constraint"),
    [
        (_VERSION, {"unit": 2, "start": "2025-06-30", "end": None, "code": "C9", "lead": False}, "ex_unit_versions_unit"),
        (_VERSION, {"unit": 3, "start": "2025-07-01", "end": None, "code": "C1", "lead": False}, None),  # C1 free again
        (_VERSION, {"unit": 3, "start": "2025-07-01", "end": None, "code": "C3", "lead": False}, None),  # adjacent, not overlapping
        (_VERSION, {"unit": 3, "start": "2025-07-01", "end": "2026-01-01", "code": "C1", "lead": False}, None),
        (_VERSION, {"unit": 3, "start": "2025-07-01", "end": None, "code": "C9", "lead": True}, None),  # the lead passes on
    ],
)
def test_the_database_tells_touching_periods_from_overlapping_ones(
    raw_units: Database, statement: str, values: dict[str, object], constraint: str | None
) -> None:
    if constraint is None:
        _raw(raw_units, statement, **values)
    else:
        with pytest.raises(PeriodOverlap) as info:
            _raw(raw_units, statement, **values)
        assert info.value.constraint == constraint


@pytest.mark.parametrize(
    ("statement", "values", "constraint"),
    [
        # 30307 on two units in one period
        (_VERSION, {"unit": 4, "start": "2025-06-01", "end": None, "code": "C1", "lead": False}, "ex_unit_versions_code"),
        (_VERSION, {"unit": 4, "start": "2019-01-01", "end": "2020-01-02", "code": "C2", "lead": False}, "ex_unit_versions_code"),
        # two versions of one unit on one day
        (_VERSION, {"unit": 1, "start": "2024-01-01", "end": None, "code": "C7", "lead": False}, "ex_unit_versions_unit"),
        # two lead units on one day
        (_VERSION, {"unit": 4, "start": "2025-06-30", "end": "2025-07-02", "code": "C8", "lead": True}, "ex_unit_versions_lead"),
        # two parents of one unit on one day
        (_PARENT, {"unit": 2, "parent": 3, "start": "2025-06-30", "end": None}, "ex_unit_parents_unit"),
        (_PARENT, {"unit": 2, "parent": 3, "start": "2019-06-30", "end": "2020-01-02"}, "ex_unit_parents_unit"),
        # a parent link that ends before it starts
        (_PARENT, {"unit": 3, "parent": 1, "start": "2025-06-30", "end": "2025-06-30"}, "ck_unit_parents_period"),
    ],
)
def test_the_database_refuses_overlapping_periods_with_a_typed_error(
    raw_units: Database, statement: str, values: dict[str, object], constraint: str
) -> None:
    with pytest.raises(PeriodOverlap) as info:
        _raw(raw_units, statement, **values)
    assert info.value.constraint == constraint
    assert isinstance(info.value, Conflict)
    with raw_units.read() as session:  # nothing was stored
        assert session.scalar(text("SELECT count(*) FROM unit_versions")) == 3
        assert session.scalar(text("SELECT count(*) FROM unit_parents")) == 1


def test_an_update_that_makes_periods_overlap_is_refused_too(raw_units: Database) -> None:
    _raw(raw_units, _VERSION, unit=3, start="2025-07-01", end=None, code="C1", lead=False)
    with pytest.raises(PeriodOverlap) as info:
        _raw(raw_units, "UPDATE unit_versions SET valid_to = NULL WHERE unit_id = 1")
    assert info.value.constraint in {"ex_unit_versions_code", "ex_unit_versions_lead"}
    _raw(raw_units, _PARENT, unit=2, parent=3, start="2025-07-01", end=None)
    with pytest.raises(PeriodOverlap) as info:
        _raw(raw_units, "UPDATE unit_parents SET valid_to = NULL WHERE unit_id = 2 AND parent_id = 1")
    assert info.value.constraint == "ex_unit_parents_unit"
