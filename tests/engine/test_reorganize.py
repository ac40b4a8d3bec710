"""A reorganisation moves open obligations, their timers and corrective actions to the successor
exactly as they were, refuses a bad file whole, and a second apply changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import pytest
from sqlalchemy import select, update

from qmsflow.engine import SYSTEM, Actor, Database, FixedClock, Runtime, ValidationFailed, advance, open_case
from qmsflow.engine.definitions import Role
from qmsflow.engine.history import verify_all
from qmsflow.engine.models import Case, HistoryEntry, Obligation, Timer, Unit, UnitSuccession
from qmsflow.engine.reorganize import apply, load_mapping
from qmsflow.engine.units import UnitKind, create_unit, parent_id, unit_by_code, version_on
from qmsflow.engine.users import create_user
from tests.conftest import HISTORY_KEY, local, rows_committed

DAY = date(2025, 7, 1)
COMMUNE = UnitKind.COMMUNE_PC.value

WALK = [
    (date(2024, 9, 2), "approve_plan", {"plan_number": "1/KH", "plan_approved_on": "2024-09-02"}),
    (date(2024, 9, 9), "establish_committee", {"committee_decision_number": "2/QĐ", "committee_decided_on": "2024-09-09"}),
    (date(2024, 9, 16), "issue_documents", {"documents_decision_number": "3/QĐ", "documents_issued_on": "2024-09-16", "procedure_count": "9"}),
    (date(2024, 9, 17), "start_applying", {}),
    (date(2024, 11, 4), "record_internal_audit", {"internal_audit_on": "2024-11-04", "internal_audit_report": "4/BC", "nonconformities_open": 0}),
    (date(2024, 11, 11), "record_management_review", {"management_review_on": "2024-11-11", "management_review_minutes": "5/BB"}),
    (date(2024, 11, 12), "confirm_effective", {"effective_confirmed_on": "2024-11-12"}),
    (date(2024, 11, 13), "announce", {"announcement_number": "6/QĐ", "announced_on": "2024-11-13"}),
    (date(2024, 11, 18), "notify_lead", {"notice_number": "7/TB", "notice_sent_on": "2024-11-18", "posted_on_website": "true"}),
    (date(2025, 3, 3), "register_legal_change", {"legal_document": "Luật 72/2025/QH15", "legal_change_effective_on": "2025-03-01"}),
]


@dataclass
class Old:
    """Units as they stood before 1 July 2025, with a lead user."""

    units: dict[str, int] = field(default_factory=dict)
    lead: Actor = SYSTEM


@pytest.fixture
def old(db: Database, rt: Runtime, clock: FixedClock) -> Old:
    clock.set(local(date(2024, 8, 1)))
    o = Old()
    made = [
        ("89", "UBND tỉnh An Giang", UnitKind.PROVINCE_PC, None, False),
        ("SKHCN", "Sở Khoa học và Công nghệ", UnitKind.DEPARTMENT, "89", True),
        ("886", "UBND huyện An Phú", UnitKind.DISTRICT_PC, "89", False),
        ("30355", "UBND xã Phú Hội", COMMUNE, "886", False),
        ("30358", "UBND xã Phước Hưng", COMMUNE, "886", False),
        ("THCS-PH", "Trường THCS Phú Hội", UnitKind.LOWER_SECONDARY, "30355", False),
    ]
    with db.write() as session:
        for code, name, kind, parent, lead in made:
            parent_unit = session.get(Unit, o.units[parent]) if parent else None
            unit = create_unit(session, code=code, name=name, kind=str(kind), valid_from=date(2024, 1, 1), parent=parent_unit,
                               is_lead=lead, rt=rt, actor=SYSTEM)
            o.units[code] = unit.id
        user = create_user(session, username="lead", role="lead", unit=session.get(Unit, o.units["SKHCN"]),
                           email="lead@example.org", now=clock.now(), rt=rt, actor=SYSTEM)
        o.lead = Actor.of(user)
    return o


def walk_to_maintaining(db: Database, rt: Runtime, clock: FixedClock, o: Old, code: str) -> int:
    """Open a lifecycle case and walk it to maintaining, with its yearly and legal-update obligations open."""
    officer = Actor(username=f"iso-{code}", role=Role.UNIT_OFFICER, unit_id=o.units[code])
    clock.set(local(date(2024, 8, 1)))
    with db.write() as session:
        case_id = open_case(session, rt, o.lead, session.get(Unit, o.units[code]), "qms_lifecycle").id
    for day, event, data in WALK:
        clock.set(local(day))
        with db.write() as session:
            advance(session, rt, officer, case_id, event, data)
    return case_id


def open_corrective(db: Database, rt: Runtime, clock: FixedClock, o: Old, code: str, parent: int | None) -> int:
    clock.set(local(date(2025, 5, 5)))
    with db.write() as session:
        return open_case(session, rt, o.lead, session.get(Unit, o.units[code]), "corrective_action", {
            "inspection_decision": "10/QĐKT", "minutes_number": f"11/BBKT-{code}", "minutes_signed_on": "2025-05-05",
            "findings": "no internal audit after the scope change",
        }, parent_case=session.get(Case, parent) if parent else None).id


def timer_facts(session, case_id: int) -> list[tuple]:
    """Every pending obligation timer of a case, as the sweep sees it."""
    return sorted(
        (t.name, t.obligation_id, t.due_date, t.due_at, t.level, t.next_step, t.next_at, t.status)
        for t in session.scalars(select(Timer).where(Timer.case_id == case_id, Timer.status == "pending", Timer.kind == "obligation"))
    )


SPLIT = """
operations:
  - {op: create, effective: 2025-07-01, code: "30337", name: "UBND xã An Phú", kind: commune_pc, parent: "89"}
  - {op: create, effective: 2025-07-01, code: "30346", name: "UBND xã Nhơn Hội", kind: commune_pc, parent: "89"}
  - {op: create, effective: 2025-07-01, code: "30352", name: "UBND xã Phú Hữu", kind: commune_pc, parent: "89"}
  # Điều 1 khoản 1, 3, 5: Phước Hưng is divided between three new communes
  - {op: split, effective: 2025-07-01, unit: "30358", primary: "30337", others: ["30346", "30352"]}
"""


def test_a_split_into_three_keeps_every_obligation_timer_level_and_next_step(db: Database, rt: Runtime, clock: FixedClock, old: Old) -> None:
    case_id = walk_to_maintaining(db, rt, clock, old, "30358")
    ca_id = open_corrective(db, rt, clock, old, "30358", case_id)
    with db.write() as session:  # the yearly audit is already escalated twice (as the sweep leaves it)
        session.execute(update(Timer).where(Timer.case_id == case_id, Timer.name == "yearly_internal_audit", Timer.status == "pending")
                        .values(level=2, next_step=4))
    with db.read() as session:
        before = timer_facts(session, case_id)
        obligations = {o.id: (o.name, o.cycle) for o in session.scalars(select(Obligation).where(Obligation.case_id == case_id, Obligation.status == "open"))}
    assert len(before) == 3 and len(obligations) == 3
    clock.set(local(DAY, 10))
    with db.write() as session:
        report = apply(session, rt, old.lead, load_mapping(SPLIT))
    assert [r.status for r in report.operations] == ["applied"] * 4
    with db.read() as session:
        primary = unit_by_code(session, "30337", DAY)
        new_case = session.scalars(select(Case).where(Case.unit_id == primary.id, Case.workflow == "qms_lifecycle")).one()
        assert new_case.state == "reannouncing"  # the old commune had announced: its scope changed
        moved = timer_facts(session, new_case.id)
        assert [m[1:] for m in moved] == [b[1:] for b in before]  # same obligations, due, level, next step
        assert {o.id: (o.name, o.cycle) for o in session.scalars(select(Obligation).where(Obligation.case_id == new_case.id, Obligation.status == "open"))} == obligations
        old_case = session.get(Case, case_id)
        assert old_case.state == "superseded" and old_case.data["successor_unit"] == "30337"
        ca = session.get(Case, ca_id)
        assert (ca.unit_id, ca.parent_case_id, ca.state) == (primary.id, new_case.id, "open")
        kinds = [r.kind for r in session.scalars(select(HistoryEntry).where(HistoryEntry.case_id == case_id).order_by(HistoryEntry.seq))]
        assert kinds.count("obligation_moved_out") == 3 and "corrective_action_moved_out" in kinds and "split_successors" in kinds
        successors = set(session.scalars(select(UnitSuccession.successor_id).where(UnitSuccession.predecessor_id == old.units["30358"])))
        assert len(successors) == 3
        assert verify_all(session, HISTORY_KEY)[2] == []
    assert report.successors[0].code == "30337" and report.successors[0].obligations == 3
    assert ("30358", "head") not in [(c[0], c[1]) for c in report.contacts_on_ended_units]
    assert {s.code for s in report.without_contacts} == {"30337"}
    # the same file again changes nothing
    committed = rows_committed(db)
    with db.write() as session:
        again = apply(session, rt, old.lead, load_mapping(SPLIT))
    assert [r.status for r in again.operations] == ["unchanged"] * 4
    assert rows_committed(db) == committed


def test_a_move_between_parents_keeps_the_case_and_its_timers(db: Database, rt: Runtime, clock: FixedClock, old: Old) -> None:
    case_id = walk_to_maintaining(db, rt, clock, old, "THCS-PH")
    with db.read() as session:
        before = timer_facts(session, case_id)
    clock.set(local(DAY, 10))
    mapping = '- {op: move, effective: 2025-07-01, unit: THCS-PH, parent: "30358"}\n'
    with db.write() as session:
        apply(session, rt, old.lead, load_mapping(mapping))
    with db.read() as session:
        assert timer_facts(session, case_id) == before
        case = session.get(Case, case_id)
        assert (case.state, case.unit_id) == ("maintaining", old.units["THCS-PH"])
        assert parent_id(session, old.units["THCS-PH"], DAY) == old.units["30358"]
        assert parent_id(session, old.units["THCS-PH"], date(2025, 6, 30)) == old.units["30355"]


def test_a_merge_closes_same_name_obligations_into_the_earliest_and_a_dissolved_district_withdraws(
    db: Database, rt: Runtime, clock: FixedClock, old: Old
) -> None:
    first = walk_to_maintaining(db, rt, clock, old, "30355")
    second = walk_to_maintaining(db, rt, clock, old, "30358")
    district = None
    clock.set(local(date(2025, 4, 1)))
    with db.write() as session:
        district = open_case(session, rt, old.lead, session.get(Unit, old.units["886"]), "qms_lifecycle").id
    ca = open_corrective(db, rt, clock, old, "886", district)
    clock.set(local(DAY, 10))
    mapping = """
- {op: merge, effective: 2025-07-01, from: ["30355", "30358"], into: {code: "30355", name: "UBND xã Phú Hội", kind: commune_pc}}
- {op: move, effective: 2025-07-01, unit: "30355", parent: "89"}
- {op: move, effective: 2025-07-01, unit: THCS-PH, parent: "30355"}
- {op: dissolve, effective: 2025-07-01, unit: "886"}
"""
    with db.write() as session:
        apply(session, rt, old.lead, load_mapping(mapping))
    with db.read() as session:
        new = unit_by_code(session, "30355", DAY)
        assert new.id != old.units["30355"]
        case = session.scalars(select(Case).where(Case.unit_id == new.id)).one()
        statuses = sorted((o.name, o.status) for o in session.scalars(select(Obligation).where(Obligation.case_id == case.id)))
        assert statuses.count(("yearly_internal_audit", "open")) == 1 and statuses.count(("yearly_internal_audit", "merged")) == 1
        assert {session.get(Case, c).state for c in (first, second)} == {"superseded"}
        assert session.get(Case, district).state == "withdrawn"
        withdrawn = session.get(Case, ca)
        assert (withdrawn.state, withdrawn.workflow_version) == ("withdrawn", 2)  # migrated explicitly to v2 for it
        assert parent_id(session, old.units["THCS-PH"], DAY) == new.id
        assert verify_all(session, HISTORY_KEY)[2] == []


def test_a_file_with_invalid_operations_is_refused_whole_naming_each(db: Database, rt: Runtime, clock: FixedClock, old: Old) -> None:
    walk_to_maintaining(db, rt, clock, old, "30358")
    clock.set(local(DAY, 10))
    mapping = """
- {op: move, effective: 2025-07-01, unit: THCS-PH, parent: "89"}
- {op: merge, id: ghost, effective: 2025-07-01, from: ["99999"], into: {code: "30999", name: "UBND xã Ma", kind: commune_pc}}
- {op: split, id: too-early, effective: 2025-07-01, unit: "30358", primary: "30346"}
- {op: merge, id: itself, effective: 2025-07-01, from: ["30355", "30358"], into_existing: "30355"}
"""
    committed = rows_committed(db)
    with db.write() as session, pytest.raises(ValidationFailed) as refused:
        apply(session, rt, old.lead, load_mapping(mapping))
    found = {(p.field, p.code) for p in refused.value.problems}
    assert ("operation 2 (ghost)", "no_code_on") in found
    assert ("operation 3 (too-early)", "no_code_on") in found  # the successor is not valid on the date
    assert ("operation 4 (itself)", "merged_into_itself") in found
    assert rows_committed(db) == committed  # read through a second connection: nothing changed


def test_a_changed_operation_is_refused_with_the_difference(db: Database, rt: Runtime, clock: FixedClock, old: Old) -> None:
    clock.set(local(DAY, 10))
    with db.write() as session:
        apply(session, rt, old.lead, load_mapping('- {op: rename, effective: 2025-07-01, unit: "886", name: "UBND huyện An Phú (cũ)"}\n'))
    with db.write() as session, pytest.raises(ValidationFailed) as refused:
        apply(session, rt, old.lead, load_mapping('- {op: rename, effective: 2025-07-01, unit: "886", name: "UBND huyện Khác"}\n'))
    problem = refused.value.problems[0]
    assert problem.code == "reorg_changed" and "Khác" in problem.params["difference"]


def test_a_dry_run_lists_what_would_happen_and_changes_nothing(db: Database, rt: Runtime, clock: FixedClock, old: Old) -> None:
    walk_to_maintaining(db, rt, clock, old, "30358")
    clock.set(local(DAY, 10))
    committed = rows_committed(db)
    with db.write() as session:
        report = apply(session, rt, old.lead, load_mapping(SPLIT), dry_run=True)
    assert rows_committed(db) == committed
    lines = report.operations[3].lines
    assert any("ends superseded by 30337" in line for line in lines)
    assert any("opens for 30337" in line for line in lines)
    assert sum("obligation" in line and "moves to case" in line for line in lines) == 3


def test_a_backdated_operation_is_recorded_with_both_dates_and_a_future_one_is_refused(db: Database, rt: Runtime, clock: FixedClock, old: Old) -> None:
    from qmsflow.engine.models import ReorganisationOperation

    clock.set(local(date(2025, 9, 1), 10))
    with db.write() as session, pytest.raises(ValidationFailed) as refused:
        apply(session, rt, old.lead, load_mapping('- {op: rename, effective: 2025-09-02, unit: "886", name: "Sau"}\n'))
    assert refused.value.problems[0].code == "reorg_future"
    with db.write() as session:
        apply(session, rt, old.lead, load_mapping('- {op: rename, id: late, effective: 2025-07-01, unit: "886", name: "UBND huyện An Phú (cũ)"}\n'))
    with db.read() as session:
        stored = session.scalars(select(ReorganisationOperation)).one()
        assert (stored.op_key, stored.effective, stored.backdated, stored.actor) == ("late", DAY, True, "lead")
        assert stored.applied_at == clock.now()
        before, after = version_on(session, old.units["886"], date(2025, 6, 30)), version_on(session, old.units["886"], DAY)
        assert before is not None and after is not None
        assert (before.name, after.name) == ("UBND huyện An Phú", "UBND huyện An Phú (cũ)")  # the old name intact before the day


def test_only_a_lead_or_an_administrator_applies(db: Database, rt: Runtime, clock: FixedClock, old: Old) -> None:
    from qmsflow.engine import NotPermitted

    clock.set(local(DAY, 10))
    officer = Actor(username="iso", role=Role.UNIT_OFFICER, unit_id=old.units["30355"])
    with db.write() as session, pytest.raises(NotPermitted):
        apply(session, rt, officer, load_mapping('- {op: rename, effective: 2025-07-01, unit: "886", name: "X"}\n'))


def test_user_accounts_move_and_the_audit_replays_a_cases_unit(db: Database, rt: Runtime, clock: FixedClock, old: Old) -> None:
    case_id = walk_to_maintaining(db, rt, clock, old, "30358")
    ca_id = open_corrective(db, rt, clock, old, "30358", case_id)
    with db.write() as session:
        for name in ("ph.iso", "ph.head"):
            create_user(session, username=name, role="unit_officer", unit=session.get(Unit, old.units["30358"]),
                        email=f"{name}@example.org", now=clock.now(), rt=rt, actor=SYSTEM)
    clock.set(local(DAY, 10))
    mapping = SPLIT + '  - {op: move_users, effective: 2025-07-01, users: [ph.iso], to: "30337"}\n'
    with db.write() as session:
        report = apply(session, rt, old.lead, load_mapping(mapping))
    assert report.users_on_ended_units == [("ph.head", "30358")]  # the one the file did not move
    with db.read() as session:
        assert unit_by_code(session, "30337", DAY).id == session.scalar(select(Unit.id).join(Case, Case.unit_id == Unit.id).where(Case.id == ca_id))
        assert verify_all(session, HISTORY_KEY)[2] == []
    with db.write() as session:  # a corrective action re-pointed outside a recorded move is found
        session.execute(update(Case).where(Case.id == ca_id).values(unit_id=old.units["30355"]))
    with db.read() as session:
        assert any("replays to unit" in f.problem for f in verify_all(session, HISTORY_KEY)[2])


def test_the_mapping_may_set_the_successors_deadline(db: Database, rt: Runtime, clock: FixedClock, old: Old) -> None:
    walk_to_maintaining(db, rt, clock, old, "30358")
    clock.set(local(DAY, 10))
    mapping = ('- {op: merge, effective: 2025-07-01, deadline: 2025-12-31, from: ["30355", "30358"], '
               'into: {code: "30355", name: "UBND xã Phú Hội", kind: commune_pc}}\n')
    with db.write() as session:
        apply(session, rt, old.lead, load_mapping(mapping))
    with db.read() as session:
        new = unit_by_code(session, "30355", DAY)
        case = session.scalars(select(Case).where(Case.unit_id == new.id)).one()
        timer = session.scalars(select(Timer).where(Timer.case_id == case.id, Timer.kind == "state", Timer.status == "pending")).one()
        assert (case.state, timer.name, timer.due_date, timer.level) == ("reannouncing", "reannounce_due", date(2025, 12, 31), 0)
    with db.write() as session, pytest.raises(ValidationFailed):
        apply(session, rt, old.lead, load_mapping('- {op: split, effective: 2025-07-01, deadline: 2025-06-01, unit: "886", primary: "89"}\n'))
