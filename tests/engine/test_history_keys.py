"""History key rotation: rows name their key, retired keys only verify, a wrong key is called a wrong key."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from qmsflow.engine import ConfigurationError, Database, FixedClock, Runtime, advance, open_case
from qmsflow.engine.history import append, row_hash, verify_all
from qmsflow.engine.keys import HistoryKey, HistoryKeyRetired, Keyring, register_keys, rotate
from qmsflow.engine.models import Case, HistoryEntry
from tests.conftest import HISTORY_KEY, Province, local

KEY_2 = b"the-second-history-key"
STEPS = [
    ("approve_plan", {"plan_number": "1/KH", "plan_approved_on": "2026-01-05"}),
    ("establish_committee", {"committee_decision_number": "2/QĐ", "committee_decided_on": "2026-01-06"}),
    ("issue_documents", {"documents_decision_number": "3/QĐ", "documents_issued_on": "2026-01-07", "procedure_count": 9}),
]


def _with_keys(rt: Runtime, keyring: Keyring) -> Runtime:
    return Runtime(registry=rt.registry, calendar=rt.calendar, clock=rt.clock, history_key=keyring)


@pytest.fixture
def rotated(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> tuple[int, Keyring]:
    """A case with rows 1-2 under key 1, a rotation on 8 January, then rows 3-4 under key 2."""
    with db.write() as session:
        register_keys(session, rt.keyring, clock.now())
        cid = open_case(session, rt, province.actors["lead"], province.units["SNV"], "qms_lifecycle").id
    clock.set(local(date(2026, 1, 7)))
    with db.write() as session:
        advance(session, rt, province.actors["snv"], cid, *STEPS[0])
    clock.set(local(date(2026, 1, 8)))
    with db.write() as session:
        ring = rotate(session, rt.keyring, clock.now(), KEY_2)
    after = _with_keys(rt, ring)
    for day, step in ((9, STEPS[1]), (10, STEPS[2])):
        clock.set(local(date(2026, 1, day)))
        with db.write() as session:
            advance(session, after, province.actors["snv"], cid, *step)
    return cid, ring


def _problems(db: Database, keyring: Keyring | bytes) -> list[str]:
    with db.read() as session:
        _, _, findings = verify_all(session, keyring)
    return [str(f) for f in findings]


def test_a_chain_continued_under_a_rotated_key_verifies(db: Database, rotated: tuple[int, Keyring]) -> None:
    cid, ring = rotated
    assert (ring.current.key_id, [k.key_id for k in ring.retired]) == ("2", ["1"])
    with db.read() as session:
        rows = list(session.execute(select(HistoryEntry.seq, HistoryEntry.key_id, HistoryEntry.form).where(HistoryEntry.case_id == cid).order_by(HistoryEntry.seq)))
    assert [tuple(r) for r in rows] == [(1, "1", 2), (2, "1", 2), (3, "2", 2), (4, "2", 2)]
    assert _problems(db, ring) == []


def test_a_keyring_without_the_retired_key_reports_its_rows(db: Database, rotated: tuple[int, Keyring]) -> None:
    _, ring = rotated
    assert _problems(db, Keyring(ring.current)) == ["history key '1': 2 rows are signed by this key, which is not in the keyring"]


@pytest.mark.parametrize("which", ["current", "retired"])
def test_a_wrong_key_is_reported_as_a_wrong_key_not_as_edited_rows(
    db: Database, rotated: tuple[int, Keyring], which: str
) -> None:
    _, ring = rotated
    if which == "current":
        wrong = Keyring(HistoryKey("2", b"not-key-2"), ring.retired)
        expected = "history key '2': this is not the key that wrote the chain (2 rows not checked)"
    else:
        wrong = Keyring(ring.current, (HistoryKey("1", b"not-key-1", ring.retired[0].retired_at),))
        expected = "history key '1': this is not the key that wrote the chain (2 rows not checked)"
    problems = _problems(db, wrong)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_a_wrong_key_is_refused_at_start(db: Database, rotated: tuple[int, Keyring], clock: FixedClock) -> None:
    _, ring = rotated
    with db.write() as session, pytest.raises(ConfigurationError, match="not the key that wrote the chain"):
        register_keys(session, Keyring(HistoryKey("2", b"not-key-2"), ring.retired), clock.now())


@pytest.mark.parametrize(("seq", "key_id"), [(2, "1"), (4, "2")])
def test_an_edited_row_is_reported_as_edited_under_either_key(
    db: Database, rotated: tuple[int, Keyring], seq: int, key_id: str
) -> None:
    cid, ring = rotated
    with db.write() as session:
        session.execute(update(HistoryEntry).where(HistoryEntry.case_id == cid, HistoryEntry.seq == seq).values(data={"x": "forged"}))
    assert _problems(db, ring) == [f"case {cid} row {seq}: content does not match its hash (edited)"]


def test_a_row_moved_to_the_other_key_is_reported_as_edited(db: Database, rotated: tuple[int, Keyring]) -> None:
    # The key id is inside the signed bytes: relabelling a row cannot make another key vouch for it.
    cid, ring = rotated
    with db.write() as session:
        session.execute(update(HistoryEntry).where(HistoryEntry.case_id == cid, HistoryEntry.seq == 2).values(key_id="2"))
    assert _problems(db, ring) == [f"case {cid} row 2: content does not match its hash (edited)"]


def test_a_retired_key_cannot_sign_a_new_row(db: Database, rotated: tuple[int, Keyring], clock: FixedClock) -> None:
    cid, ring = rotated
    retired = ring.get("1")
    assert retired is not None and retired.retired_at is not None
    with db.write() as session:
        case = session.get(Case, cid)
        assert case is not None
        with pytest.raises(HistoryKeyRetired):
            append(session, retired, case, at=clock.now(), kind="note", actor="system")
    # A process that still holds the keyring from before the rotation is refused at start ...
    stale = Keyring.single(HISTORY_KEY)
    with db.write() as session, pytest.raises(HistoryKeyRetired):
        register_keys(session, stale, clock.now())
    # ... and by the database, should it write anyway (migration 0004's trigger).
    with db.write() as session:
        case = session.get(Case, cid)
        assert case is not None
        with pytest.raises(IntegrityError, match="retired"):
            append(session, stale, case, at=clock.now(), kind="note", actor="system")
    assert _problems(db, ring) == []


def test_a_row_dated_after_its_keys_retirement_is_reported(db: Database, rotated: tuple[int, Keyring]) -> None:
    cid, ring = rotated
    late = ring.retired[0].retired_at
    assert late is not None
    with db.write() as session:
        row = session.scalars(select(HistoryEntry).where(HistoryEntry.case_id == cid, HistoryEntry.seq == 1)).one()
        # re-signed honestly with key 1, but dated after key 1 was retired
        row.at = late + timedelta(seconds=1)
        row.hash = row_hash(HISTORY_KEY, cid, 1, {"at": row.at, "kind": row.kind, "event": row.event,
                            "from_state": row.from_state, "to_state": row.to_state, "actor": row.actor,
                            "data": row.data}, row.prev_hash, "1")
    problems = _problems(db, ring)
    assert any(p.startswith(f"case {cid} row 1: signed by key '1' after its retirement") for p in problems), problems


def test_rows_in_the_form_before_key_ids_still_verify(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    # Rows written before migration 0004: form 1 (no key id in the signed bytes), key_id '1'.
    with db.write() as session:
        cid = open_case(session, rt, province.actors["lead"], province.units["SNV"], "qms_lifecycle").id
    clock.set(local(date(2026, 1, 7)))
    with db.write() as session:
        advance(session, rt, province.actors["snv"], cid, *STEPS[0])
    with db.write() as session:
        rows = list(session.scalars(select(HistoryEntry).where(HistoryEntry.case_id == cid).order_by(HistoryEntry.seq)))
        prev = ""
        for row in rows:
            fields = {"at": row.at, "kind": row.kind, "event": row.event, "from_state": row.from_state,
                      "to_state": row.to_state, "actor": row.actor, "data": row.data}
            row.prev_hash, row.form = prev, 1
            row.hash = prev = row_hash(HISTORY_KEY, cid, row.seq, fields, prev)  # today's form, no key id
        case = session.get(Case, cid)
        assert case is not None
        case.history_head = prev
    assert _problems(db, HISTORY_KEY) == []
    # and after a rotation, under the retired key 1, with new rows in form 2 after them
    clock.set(local(date(2026, 1, 7), hour=10))
    with db.write() as session:
        register_keys(session, rt.keyring, clock.now())
        ring = rotate(session, rt.keyring, clock.now(), KEY_2)
    clock.set(local(date(2026, 1, 8)))
    with db.write() as session:
        advance(session, _with_keys(rt, ring), province.actors["snv"], cid, *STEPS[1])
    assert _problems(db, ring) == []
    with db.write() as session:
        session.execute(update(HistoryEntry).where(HistoryEntry.case_id == cid, HistoryEntry.seq == 1).values(actor="forger"))
    assert _problems(db, ring) == [f"case {cid} row 1: content does not match its hash (edited)"]
