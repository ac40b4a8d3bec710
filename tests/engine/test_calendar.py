"""The Vietnamese working calendar and Civil Code 2015 deadline counting (docs/domain.md, "Counting deadlines")."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qmsflow.engine.calendar import CalendarOverrides, WorkingCalendar, add_months, deadline_instant

CALENDAR = WorkingCalendar()  # package holidays only; shared, it holds no state a test changes

# A swap the `holidays` package cannot know (it is made up for these tests): Thu 29 Apr 2027 off,
# bridging to 30 Apr, in exchange for working Sat 24 Apr 2027.
EXTRA_DAY_OFF = date(2027, 4, 29)
MAKE_UP_SATURDAY = date(2027, 4, 24)
SWAP_2027: dict[object, object] = {
    2027: {
        "days_off": [{"date": "2027-04-29", "name": "Nghỉ bù cho ngày làm 24/04/2027"}],
        "working_days": [{"date": "2027-04-24", "name": "Làm bù cho ngày nghỉ 29/04/2027"}],
    }
}


def working_days_in(calendar: WorkingCalendar, after: date, through: date) -> int:
    """Count working days in the half-open interval (after, through]."""
    return sum(calendar.is_working_day(after + timedelta(days=k)) for k in range(1, (through - after).days + 1))


# ---------------------------------------------------------------------------------- working days


def test_tet_2026_is_five_days_off_from_monday_16_to_friday_20_february() -> None:
    tet = [date(2026, 2, day) for day in range(16, 21)]
    assert [CALENDAR.is_working_day(day) for day in tet] == [False] * 5
    assert CALENDAR.is_working_day(date(2026, 2, 13))
    assert CALENDAR.is_working_day(date(2026, 2, 23))


def test_five_working_days_from_friday_13_february_2026_skip_tet_and_end_friday_27() -> None:
    assert CALENDAR.add_working_days(date(2026, 2, 13), 5) == date(2026, 2, 27)
    assert CALENDAR.due_date(date(2026, 2, 13), 5, "working_days") == date(2026, 2, 27)


def test_monday_27_april_2026_is_off_because_hung_kings_day_falls_on_a_sunday() -> None:
    assert date(2026, 4, 26).weekday() == 6
    assert not CALENDAR.is_working_day(date(2026, 4, 27))
    assert "Hùng Vương" in (CALENDAR.day_off_reason(date(2026, 4, 27)) or "")


def test_weekends_are_off_and_weekdays_without_a_holiday_are_worked() -> None:
    assert CALENDAR.day_off_reason(date(2026, 3, 7)) == "weekend"  # a Saturday
    assert not CALENDAR.is_working_day(date(2026, 3, 8))  # a Sunday
    assert CALENDAR.is_working_day(date(2026, 3, 9))
    assert CALENDAR.day_off_reason(date(2026, 3, 9)) is None


def test_the_holidays_package_alone_knows_neither_day_of_the_2027_test_swap() -> None:
    package = holidays.country_holidays("VN", years=2027)
    assert EXTRA_DAY_OFF not in package and EXTRA_DAY_OFF.weekday() == 3
    assert CALENDAR.is_working_day(EXTRA_DAY_OFF)
    assert MAKE_UP_SATURDAY.weekday() == 5
    assert not CALENDAR.is_working_day(MAKE_UP_SATURDAY)


def test_override_mapping_adds_a_day_off_and_a_make_up_working_saturday() -> None:
    calendar = WorkingCalendar(CalendarOverrides.from_mapping(SWAP_2027))
    assert not calendar.is_working_day(EXTRA_DAY_OFF)
    assert calendar.day_off_reason(EXTRA_DAY_OFF) == "Nghỉ bù cho ngày làm 24/04/2027"
    assert calendar.is_working_day(MAKE_UP_SATURDAY)
    assert calendar.day_off_reason(MAKE_UP_SATURDAY) is None


def test_working_day_counting_honours_the_overridden_days() -> None:
    calendar = WorkingCalendar(CalendarOverrides.from_mapping(SWAP_2027))
    # Friday + 1 working day: the make-up Saturday, not Monday
    assert CALENDAR.add_working_days(date(2027, 4, 23), 1) == date(2027, 4, 26)
    assert calendar.add_working_days(date(2027, 4, 23), 1) == MAKE_UP_SATURDAY
    # Wednesday + 1: skips the extra Thursday off, 30 Apr, the weekend and Mon 3 May (1 May in lieu)
    assert CALENDAR.add_working_days(date(2027, 4, 28), 1) == EXTRA_DAY_OFF
    assert calendar.add_working_days(date(2027, 4, 28), 1) == date(2027, 5, 4)
    # Thursday + 3: Fri 23, Sat 24 (made up), Mon 26; without the swap Tuesday 27
    assert CALENDAR.due_date(date(2027, 4, 22), 3, "working_days") == date(2027, 4, 27)
    assert calendar.due_date(date(2027, 4, 22), 3, "working_days") == date(2027, 4, 26)


def test_an_override_wins_over_a_holiday_the_package_knows() -> None:
    calendar = WorkingCalendar(CalendarOverrides.from_mapping({2026: {"working_days": ["2026-04-27"]}}))
    assert calendar.is_working_day(date(2026, 4, 27))


def test_the_shipped_make_up_saturday_of_2025_is_a_working_day_only_through_overrides() -> None:
    overrides = CalendarOverrides.from_mapping({2025: {"working_days": [date(2025, 4, 26)]}})
    assert not CALENDAR.is_working_day(date(2025, 4, 26))
    assert WorkingCalendar(overrides).is_working_day(date(2025, 4, 26))
    assert not WorkingCalendar(overrides).is_working_day(date(2025, 5, 2))  # the swapped day, from the package


def test_working_days_can_be_counted_backwards() -> None:
    assert CALENDAR.add_working_days(date(2026, 2, 23), -1) == date(2026, 2, 13)


# ------------------------------------------------------------------------ Civil Code Art. 147-148


def test_the_start_day_is_not_counted() -> None:
    monday = date(2026, 3, 2)
    assert CALENDAR.due_date(monday, 1, "days") == date(2026, 3, 3)
    assert CALENDAR.due_date(monday, 1, "working_days") == date(2026, 3, 3)
    assert CALENDAR.due_date(monday, 1, "months") == date(2026, 4, 2)


def test_31_january_2026_plus_one_month_is_saturday_28_february_so_due_monday_2_march() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert date(2026, 2, 28).weekday() == 5
    assert CALENDAR.due_date(date(2026, 1, 31), 1, "months") == date(2026, 3, 2)


def test_31_march_plus_one_month_is_30_april_a_holiday_so_due_the_next_working_day() -> None:
    assert add_months(date(2026, 3, 31), 1) == date(2026, 4, 30)
    # 30 Apr and 1 May are holidays, then a weekend
    assert CALENDAR.due_date(date(2026, 3, 31), 1, "months") == date(2026, 5, 4)


def test_months_are_counted_across_the_year_end() -> None:
    assert add_months(date(2026, 10, 31), 4) == date(2027, 2, 28)
    assert CALENDAR.due_date(date(2026, 10, 31), 4, "months") == date(2027, 3, 1)  # 28 Feb is a Sunday
    assert add_months(date(2026, 12, 5), 2) == date(2027, 2, 5)
    assert CALENDAR.due_date(date(2026, 12, 5), 2, "months") == date(2027, 2, 11)  # Tết 2027: 4-10 Feb
    assert add_months(date(2026, 12, 31), 12) == date(2027, 12, 31)


def test_31_january_2028_plus_one_month_is_leap_day_tuesday_29_february() -> None:
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)
    assert date(2028, 2, 29).weekday() == 1
    assert CALENDAR.due_date(date(2028, 1, 31), 1, "months") == date(2028, 2, 29)


def test_31_january_2027_plus_one_month_is_sunday_28_february_so_due_monday_1_march() -> None:
    assert CALENDAR.due_date(date(2027, 1, 31), 1, "months") == date(2027, 3, 1)


def test_a_year_from_leap_day_ends_on_28_february() -> None:
    assert add_months(date(2028, 2, 29), 12) == date(2029, 2, 28)


def test_a_period_ending_on_a_day_off_in_calendar_days_moves_to_the_next_working_day() -> None:
    assert CALENDAR.due_date(date(2026, 2, 12), 4, "days") == date(2026, 2, 23)  # lands in Tết


def test_a_zero_working_day_period_started_on_a_day_off_ends_on_the_next_working_day() -> None:
    # Regression: due_date returned the Saturday itself, breaking "working-day periods end on a working day".
    assert CALENDAR.due_date(date(2026, 3, 7), 0, "working_days") == date(2026, 3, 9)
    assert CALENDAR.due_date(date(2026, 3, 9), 0, "working_days") == date(2026, 3, 9)


def test_a_negative_period_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        CALENDAR.due_date(date(2026, 3, 2), -1, "days")


def test_an_unknown_unit_is_refused() -> None:
    with pytest.raises(ValueError):
        CALENDAR.due_date(date(2026, 3, 2), 1, "weeks")


def test_a_due_date_passes_at_local_midnight_the_next_day_which_is_17_00_utc() -> None:
    assert deadline_instant(date(2026, 3, 2)) == datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------ override config


def test_a_date_listed_as_both_day_off_and_working_day_is_refused_by_name() -> None:
    raw: dict[object, object] = {2027: {"days_off": ["2027-04-29"], "working_days": ["2027-04-29"]}}
    with pytest.raises(ValueError, match=r"2027-04-29 as both day off and working day"):
        CalendarOverrides.from_mapping(raw)


@pytest.mark.parametrize("bad", ["2027-02-30", "29/04/2027", "next monday", None])
def test_a_date_that_is_not_yyyy_mm_dd_is_refused_with_its_place(bad: object) -> None:
    with pytest.raises(ValueError, match=r"2027\.days_off: .* is not a YYYY-MM-DD date"):
        CalendarOverrides.from_mapping({2027: {"days_off": [bad]}})


def test_a_date_under_the_wrong_year_is_refused() -> None:
    with pytest.raises(ValueError, match=r"2026\.working_days: 2027-04-24 is not in 2026"):
        CalendarOverrides.from_mapping({2026: {"working_days": ["2027-04-24"]}})


def test_a_time_instead_of_a_date_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a date, not a time"):
        CalendarOverrides.from_mapping({2027: {"days_off": [datetime(2027, 4, 29, 8, 0)]}})


def test_an_unknown_key_in_a_year_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown keys \['holidays'\]"):
        CalendarOverrides.from_mapping({2027: {"holidays": ["2027-04-29"]}})


def test_no_overrides_is_the_same_as_an_empty_mapping() -> None:
    assert CalendarOverrides.from_mapping(None) == CalendarOverrides.from_mapping({})


def test_the_fingerprint_is_stable_for_the_same_days_in_any_order() -> None:
    first = CalendarOverrides.from_mapping(SWAP_2027).fingerprint()
    again = CalendarOverrides.from_mapping(SWAP_2027).fingerprint()
    reordered = CalendarOverrides.from_mapping({2027: {"working_days": ["2027-04-24"], "days_off": ["2027-04-29"]}}).fingerprint()
    assert first == again == reordered


def test_the_fingerprint_changes_when_a_day_is_added_removed_or_moved() -> None:
    base = CalendarOverrides.from_mapping(SWAP_2027).fingerprint()
    added = CalendarOverrides.from_mapping({**SWAP_2027, 2026: {"days_off": ["2026-12-31"]}}).fingerprint()
    removed = CalendarOverrides.from_mapping({2027: {"days_off": ["2027-04-29"]}}).fingerprint()
    moved = CalendarOverrides.from_mapping({2027: {"days_off": ["2027-04-24"], "working_days": ["2027-04-29"]}}).fingerprint()
    assert len({base, added, removed, moved}) == 4


# ------------------------------------------------------------------------------------ properties

starts = st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 31))


@settings(max_examples=300, deadline=None)
@given(start=starts, n=st.integers(min_value=0, max_value=60))
def test_adding_n_working_days_crosses_exactly_n_working_days(start: date, n: int) -> None:
    result = CALENDAR.add_working_days(start, n)
    assert result >= start
    assert working_days_in(CALENDAR, start, result) == n
    if n > 0:
        assert CALENDAR.is_working_day(result)
    else:
        assert result == start  # nothing to cross; due_date is what moves off a day off


@settings(max_examples=300, deadline=None)
@given(start=starts, n=st.integers(min_value=0, max_value=60))
def test_a_working_day_due_date_always_lands_on_a_working_day(start: date, n: int) -> None:
    assert CALENDAR.is_working_day(CALENDAR.due_date(start, n, "working_days"))


@settings(max_examples=300, deadline=None)
@given(start=starts, months=st.integers(min_value=0, max_value=24))
def test_a_month_due_date_is_the_first_working_day_on_or_after_the_civil_code_last_day(start: date, months: int) -> None:
    last = add_months(start, months)
    due = CALENDAR.due_date(start, months, "months")
    assert CALENDAR.is_working_day(due)
    assert working_days_in(CALENDAR, last - timedelta(days=1), due - timedelta(days=1)) == 0
