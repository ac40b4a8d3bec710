"""When a request is wrong in several ways at once, ``advance`` names the first in a fixed order.

scope (NotFound) > role (NotPermitted) > expected version (StaleVersion) > state (InvalidTransition)
> data, then guard (GuardFailed). Every refusal leaves every table as it was, and leaves nothing
pending in the caller's session either.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from qmsflow.engine import (
    Database,
    GuardFailed,
    InvalidTransition,
    NotFound,
    NotPermitted,
    QmsflowError,
    Runtime,
    StaleVersion,
    advance,
    get_case,
    open_case,
)
from tests.conftest import Province, rows_committed, rows_through

PLAN = {"plan_number": "12/KH", "plan_approved_on": "2026-01-05"}
COMMITTEE = {"committee_decision_number": "30/QĐ", "committee_decided_on": "2026-01-05"}
NOTICE = {"notice_number": "6/TB", "notice_sent_on": "2026-01-05", "posted_on_website": True}
UNKNOWN = "launch_rocket"

E = TypeVar("E", bound=QmsflowError)


def refused(
    db: Database,
    rt: Runtime,
    province: Province,
    user: str,
    case_id: int,
    event: str,
    data: dict[str, Any] | None,
    expected_version: int | None,
    error: type[E],
) -> E:
    """Assert the request raises exactly ``error`` and changes nothing; return the error.

    "Nothing" is checked twice: through the caller's own session before it rolls back (a second
    connection could never see an uncommitted write), and through a second connection after.
    """
    before = rows_committed(db)
    with pytest.raises(QmsflowError) as info, db.write() as session:
        try:
            advance(session, rt, province.actors[user], case_id, event, data, expected_version=expected_version)
        finally:
            assert not (session.new or session.dirty or session.deleted)
            assert rows_through(session) == before, "the refused request wrote inside the caller's transaction"
    assert type(info.value) is error, f"expected {error.__name__}, got {type(info.value).__name__}: {info.value}"
    assert rows_committed(db) == before
    assert isinstance(info.value, error)
    return info.value


@pytest.fixture
def tnh_case(db: Database, rt: Runtime, province: Province) -> int:
    """A THPT-TNH case in 'building' at version 2, so version 1 is stale and notify_lead cannot fire."""
    with db.write() as session:
        case = open_case(session, rt, province.actors["lead"], province.units["THPT-TNH"], "qms_lifecycle")
        advance(session, rt, province.actors["tnh"], case.id, "approve_plan", PLAN, expected_version=1)
        assert (case.state, case.version) == ("building", 2)
        return case.id


@pytest.fixture
def thcs_case(db: Database, rt: Runtime, province: Province) -> int:
    """A THCS-MT case (under the Mỹ Thới commune, not under the education department), in 'planned'."""
    with db.write() as session:
        return open_case(session, rt, province.actors["lead"], province.units["THCS-MT"], "qms_lifecycle").id


# ----------------------------------------------------------------------------------------- scope


def test_scope_comes_first_an_out_of_scope_officer_with_the_wrong_role_and_a_stale_version_gets_not_found(
    db: Database, rt: Runtime, province: Province, tnh_case: int
) -> None:
    # withdraw is the lead's; version 1 is stale; the data is missing: none of it is reported
    error = refused(db, rt, province, "thcs", tnh_case, "withdraw", {}, 1, NotFound)
    assert (error.kind, error.key) == ("case", tnh_case)


def test_a_unit_officer_of_another_unit_gets_not_found_even_for_a_request_that_would_succeed(
    db: Database, rt: Runtime, province: Province, tnh_case: int
) -> None:
    hidden = refused(db, rt, province, "snv", tnh_case, "establish_committee", COMMITTEE, 2, NotFound)
    # word for word what a case that does not exist gives, so scope does not leak
    missing = refused(db, rt, province, "snv", 10_000, "establish_committee", COMMITTEE, 2, NotFound)
    assert str(hidden).replace(str(tnh_case), "N") == str(missing).replace("10000", "N")


def test_an_out_of_scope_unknown_event_is_not_found_not_invalid(
    db: Database, rt: Runtime, province: Province, tnh_case: int
) -> None:
    refused(db, rt, province, "thcs", tnh_case, UNKNOWN, None, 1, NotFound)


def test_a_supervisor_sees_its_subtree_only_and_cannot_fire_unit_officer_events(
    db: Database, rt: Runtime, province: Province, tnh_case: int, thcs_case: int
) -> None:
    with db.read() as session:
        assert get_case(session, rt, province.actors["gddt"], tnh_case).id == tnh_case
        assert get_case(session, rt, province.actors["mythoi"], thcs_case).id == thcs_case
        with pytest.raises(NotFound):
            get_case(session, rt, province.actors["gddt"], thcs_case)
        with pytest.raises(NotFound):
            get_case(session, rt, province.actors["mythoi"], tnh_case)
    # in the subtree, with the right version, state and data: still not theirs to fire
    refused(db, rt, province, "gddt", tnh_case, "establish_committee", COMMITTEE, 2, NotPermitted)
    refused(db, rt, province, "mythoi", thcs_case, "approve_plan", PLAN, 1, NotPermitted)
    # outside it, the same request does not find the case
    refused(db, rt, province, "gddt", thcs_case, "approve_plan", PLAN, 1, NotFound)
    refused(db, rt, province, "mythoi", tnh_case, "establish_committee", COMMITTEE, 2, NotFound)


# ------------------------------------------------------------------------------------------ role


def test_an_in_scope_viewer_is_not_permitted_before_the_version_is_checked(
    db: Database, rt: Runtime, province: Province, tnh_case: int
) -> None:
    error = refused(db, rt, province, "viewer", tnh_case, "establish_committee", COMMITTEE, 1, NotPermitted)
    assert (error.user, error.case_id) == ("viewer", tnh_case)
    # a viewer never fires anything, not even an event the definition does not know
    refused(db, rt, province, "viewer", tnh_case, UNKNOWN, None, 1, NotPermitted)


def test_a_wrong_role_is_not_permitted_before_a_stale_version_an_invalid_state_or_bad_data(
    db: Database, rt: Runtime, province: Province, tnh_case: int
) -> None:
    # approve_plan is the unit officer's and cannot fire from 'building'; its data is missing
    refused(db, rt, province, "lead", tnh_case, "approve_plan", {}, 1, NotPermitted)
    refused(db, rt, province, "admin", tnh_case, "notify_lead", None, 1, NotPermitted)


# --------------------------------------------------------------------------------------- version


def test_with_the_right_role_a_stale_version_is_reported_before_an_invalid_state(
    db: Database, rt: Runtime, province: Province, tnh_case: int
) -> None:
    error = refused(db, rt, province, "tnh", tnh_case, "notify_lead", {}, 1, StaleVersion)
    assert (error.expected, error.actual) == (1, 2)
    # a version from the future is just as wrong as one from the past
    refused(db, rt, province, "tnh", tnh_case, "notify_lead", NOTICE, 3, StaleVersion)


# ----------------------------------------------------------------------------------------- state


def test_an_invalid_state_is_reported_before_missing_data(db: Database, rt: Runtime, province: Province, tnh_case: int) -> None:
    error = refused(db, rt, province, "tnh", tnh_case, "notify_lead", {}, 2, InvalidTransition)
    assert (error.state, error.event) == ("building", "notify_lead")
    refused(db, rt, province, "tnh", tnh_case, "notify_lead", None, None, InvalidTransition)


@pytest.mark.parametrize(
    ("user", "expected_version", "error"),
    [
        ("tnh", 2, InvalidTransition),
        ("tnh", None, InvalidTransition),
        ("tnh", 1, StaleVersion),  # the version is checked before the event is looked up
        ("admin", 2, InvalidTransition),  # no role check for an event no role is listed for
        ("gddt", 2, InvalidTransition),
        ("gddt", 1, StaleVersion),
    ],
)
def test_an_unknown_event_skips_the_role_check_and_is_an_invalid_transition_after_the_version_check(
    db: Database,
    rt: Runtime,
    province: Province,
    tnh_case: int,
    user: str,
    expected_version: int | None,
    error: type[QmsflowError],
) -> None:
    refused(db, rt, province, user, tnh_case, UNKNOWN, {"anything": 1}, expected_version, error)


def test_an_event_from_an_end_state_is_an_invalid_transition_whatever_the_data(
    db: Database, rt: Runtime, province: Province, tnh_case: int
) -> None:
    with db.write() as session:
        advance(session, rt, province.actors["lead"], tnh_case, "withdraw", {"reason": "Sáp nhập"})
    refused(db, rt, province, "lead", tnh_case, "withdraw", {"reason": "again"}, 3, InvalidTransition)
    refused(db, rt, province, "lead", tnh_case, "supersede", {}, None, InvalidTransition)


# ------------------------------------------------------------------------------------ data, guard


def test_the_data_is_checked_before_the_guard(db: Database, rt: Runtime, province: Province, tnh_case: int) -> None:
    # start_applying's guard does not hold yet (no committee, no documents), and it takes no fields
    error = refused(db, rt, province, "tnh", tnh_case, "start_applying", {"extra": "x"}, 2, GuardFailed)
    assert [p.field for p in error.problems] == ["extra"]
    error = refused(db, rt, province, "tnh", tnh_case, "start_applying", {}, 2, GuardFailed)
    assert [p.field for p in error.problems] == ["guard"]


def test_the_same_request_done_right_succeeds_and_raises_the_version_by_exactly_one(
    db: Database, rt: Runtime, province: Province, tnh_case: int
) -> None:
    """The control: the refusals above were refusals of something that can succeed."""
    with db.write() as session:
        result = advance(session, rt, province.actors["tnh"], tnh_case, "establish_committee", COMMITTEE, expected_version=2)
        assert (result.from_state, result.to_state, result.case.version) == ("building", "building", 3)
