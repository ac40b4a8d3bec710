"""Units keep their identity while codes and parents change with time, as in the 2025 reorganisation."""

from __future__ import annotations

from datetime import date

import pytest

from qmsflow.engine import SYSTEM, Conflict, Database, NotFound, Runtime, Target, ValidationFailed
from qmsflow.engine.units import UnitKind, ancestor_ids, create_unit, escalation_body, set_parent, subtree_ids, unit_by_code
from tests.conftest import Province

MERGER = date(2025, 7, 1)


def test_a_code_is_unique_only_within_its_validity_period(db: Database, rt: Runtime) -> None:
    with db.write() as session:
        # Phường Bình Khánh's code 30292 passed to the new Phường Bình Đức on 1 July 2025
        old = create_unit(session, code="30292", name="Phường Bình Khánh", kind=UnitKind.COMMUNE_PC.value,
                          valid_from=date(2008, 1, 1), valid_to=MERGER, rt=rt, actor=SYSTEM)
        new = create_unit(session, code="30292", name="Phường Bình Đức", kind=UnitKind.COMMUNE_PC.value, valid_from=MERGER, rt=rt, actor=SYSTEM)
        assert old.id != new.id
        assert unit_by_code(session, "30292", date(2025, 6, 30)).name == "Phường Bình Khánh"
        assert unit_by_code(session, "30292", MERGER).name == "Phường Bình Đức"
        with pytest.raises(Conflict):
            create_unit(session, code="30292", name="Trùng", kind=UnitKind.COMMUNE_PC.value, valid_from=date(2026, 1, 1), rt=rt, actor=SYSTEM)
        with pytest.raises(Conflict):
            create_unit(session, code="30292", name="Chồng lấn", kind=UnitKind.COMMUNE_PC.value,
                        valid_from=date(2000, 1, 1), valid_to=date(2010, 1, 1), rt=rt, actor=SYSTEM)
        with pytest.raises(NotFound):
            unit_by_code(session, "30292", date(2007, 12, 31))


def test_bad_unit_input_names_every_problem(db: Database, rt: Runtime) -> None:
    with db.write() as session, pytest.raises(ValidationFailed) as info:
        create_unit(session, code=" ", name="", kind="castle", valid_from=MERGER, valid_to=MERGER, rt=rt, actor=SYSTEM)
    assert {p.field for p in info.value.problems} == {"code", "name", "kind", "valid_to"}


def test_a_school_that_moves_to_a_new_parent_escalates_to_the_parent_of_the_day(db: Database, rt: Runtime, province: Province) -> None:
    with db.write() as session:
        school = session.merge(province.units["THCS-MT"])
        commune = session.merge(province.units["30301"])
        sgddt = session.merge(province.units["SGDDT"])
        assert escalation_body(session, school.id, Target.SUPERVISOR, date(2025, 8, 1)).unit_id == commune.id
        set_parent(session, school, sgddt, date(2026, 9, 1), rt=rt, actor=SYSTEM)
        assert escalation_body(session, school.id, Target.SUPERVISOR, date(2026, 8, 31)).unit_id == commune.id
        assert escalation_body(session, school.id, Target.SUPERVISOR, date(2026, 9, 1)).unit_id == sgddt.id
        assert school.id in subtree_ids(session, sgddt.id, date(2026, 9, 1))
        assert school.id not in subtree_ids(session, commune.id, date(2026, 9, 1))
        assert school.id in subtree_ids(session, commune.id, date(2026, 8, 31))
        province_pc = session.merge(province.units["91"])
        assert ancestor_ids(session, school.id, date(2026, 9, 1)) == [sgddt.id, province_pc.id]
        assert escalation_body(session, school.id, Target.PROVINCIAL_PC, date(2026, 9, 1)).unit_id == province_pc.id
        assert escalation_body(session, school.id, Target.LEAD, date(2026, 9, 1)).unit_id == province.units["SKHCN"].id


def test_a_unit_cannot_be_put_under_itself(db: Database, rt: Runtime, province: Province) -> None:
    with db.write() as session, pytest.raises(ValidationFailed):
        set_parent(session, session.merge(province.units["SGDDT"]), session.merge(province.units["THPT-TNH"]), date(2026, 1, 1),
                   rt=rt, actor=SYSTEM)
