"""`qmsflow audit verify` notices every kind of tampering with the history, and passes untouched data."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest
from sqlalchemy import delete, select, update

from qmsflow.engine import Database, FixedClock, Runtime, advance, open_case
from qmsflow.engine.history import canonical_bytes, verify_all
from qmsflow.engine.models import Case, HistoryEntry
from tests.conftest import HISTORY_KEY, Province, got, local


@pytest.fixture
def case_id(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> int:
    """A case with four history rows."""
    with db.write() as session:
        cid = open_case(session, rt, province.actors["lead"], province.units["SNV"], "qms_lifecycle").id
    steps = [
        ("approve_plan", {"plan_number": "1/KH", "plan_approved_on": "2026-01-05"}),
        ("establish_committee", {"committee_decision_number": "2/QĐ", "committee_decided_on": "2026-01-06"}),
        ("issue_documents", {"documents_decision_number": "3/QĐ", "documents_issued_on": "2026-01-07", "procedure_count": 9}),
    ]
    for i, (event, data) in enumerate(steps):
        clock.set(local(date(2026, 1, 7 + i)))
        with db.write() as session:
            advance(session, rt, province.actors["snv"], cid, event, data)
    return cid


def _problems(db: Database) -> list[str]:
    with db.read() as session:
        _, _, findings = verify_all(session, HISTORY_KEY)
    return [str(f) for f in findings]


def test_untouched_history_verifies(db: Database, case_id: int) -> None:
    assert _problems(db) == []


def test_an_edited_row_is_reported(db: Database, case_id: int) -> None:
    with db.write() as session:
        session.execute(
            update(HistoryEntry).where(HistoryEntry.case_id == case_id, HistoryEntry.seq == 2).values(data={"plan_number": "99/KH"})
        )
    problems = _problems(db)
    assert any("row 2" in p and "edited" in p for p in problems), problems


def test_a_deleted_middle_row_is_reported(db: Database, case_id: int) -> None:
    with db.write() as session:
        session.execute(delete(HistoryEntry).where(HistoryEntry.case_id == case_id, HistoryEntry.seq == 2))
    problems = _problems(db)
    assert any("row 3" in p and "missing" in p for p in problems), problems


def test_a_deleted_last_row_is_reported(db: Database, case_id: int) -> None:
    with db.write() as session:
        session.execute(delete(HistoryEntry).where(HistoryEntry.case_id == case_id, HistoryEntry.seq == 4))
    problems = _problems(db)
    assert any("last rows deleted" in p for p in problems), problems


def test_a_chain_recomputed_without_the_key_is_reported(db: Database, case_id: int) -> None:
    # the tamperer edits a row and, lacking the key, rebuilds every hash with plain SHA-256
    with db.write() as session:
        rows = list(session.scalars(select(HistoryEntry).where(HistoryEntry.case_id == case_id).order_by(HistoryEntry.seq)))
        rows[1].data = {"plan_number": "99/KH", "plan_approved_on": "2026-01-05"}
        prev = ""
        for row in rows:
            fields = {"at": row.at, "kind": row.kind, "event": row.event, "from_state": row.from_state,
                      "to_state": row.to_state, "actor": row.actor, "data": row.data}
            row.prev_hash = prev
            row.hash = hashlib.sha256(canonical_bytes(case_id, row.seq, fields, prev, row.key_id)).hexdigest()
            prev = row.hash
        got(session, Case, case_id).history_head = prev
    problems = _problems(db)
    assert len([p for p in problems if "without the history key" in p]) == 4, problems


def test_a_case_row_edited_behind_the_history_is_reported(db: Database, case_id: int) -> None:
    with db.write() as session:
        session.execute(update(Case).where(Case.id == case_id).values(state="maintaining"))
    problems = _problems(db)
    assert any("replays to 'building'" in p for p in problems), problems


def test_a_wrong_key_fails_every_row(db: Database, case_id: int) -> None:
    with db.read() as session:
        _, rows, findings = verify_all(session, b"another key")
    assert rows == 4 and len(findings) == 4
