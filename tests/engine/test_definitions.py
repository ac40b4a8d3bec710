"""Loading workflow definitions: the shipped ones load, and every broken one says where and why."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qmsflow.workflows
from qmsflow.engine.definitions import load_definition, load_directory, parse_definition
from qmsflow.engine.errors import DefinitionError, DefinitionProblem

WORKFLOWS = Path(qmsflow.workflows.__file__).parent
FIXTURES = Path(__file__).parent.parent / "fixtures"
BROKEN = FIXTURES / "broken_definitions"
MINIMAL = FIXTURES / "minimal_definition.yaml"
MARKER = "# <-"  # each broken fixture marks the line its problem must name

# file -> (substring of every problem's key, substring of the problem's message)
EXPECTED: dict[str, tuple[str, str]] = {
    # a syntax error has no key to name: the parser stops before there is a tree
    "bad_yaml_syntax": ("", "YAML syntax: mapping values are not allowed here"),
    "version_not_an_integer": ("version", "valid integer"),
    "length_not_an_integer": ("states.draft.timers.draft_due.length", "valid integer"),
    "unknown_state_in_from": ("events.mark_ready.from.0", "unknown state 'drafting'"),
    "unknown_state_in_to": ("events.cancel.to", "unknown state 'cancelled'"),
    "unreachable_state": ("states.archived", "unreachable"),
    # also reports "no path from here to an end state" for each state, under states.<name>
    "no_end_state": ("states", "no end state"),
    "duplicate_event": ("events.finish", "duplicate key 'finish': first given on line"),
    "unknown_role": ("events.finish.roles.0", "'unit_officer', 'viewer' or 'system'"),
    "bad_timer_unit": ("states.draft.timers.draft_due.unit", "'working_days', 'days' or 'months'"),
    "negative_reminder": ("states.draft.timers.draft_due.reminders.0.before", "greater than 0"),
    "negative_ladder_offset": ("states.draft.timers.draft_due.escalation.1.after", "greater than or equal to 0"),
    "negative_shared_ladder_offset": ("ladders.standard.1.after", "greater than or equal to 0"),
    "condition_calls_function": ("events.finish.guard", "condition rejected: function calls are not allowed"),
    "guard_reads_unknown_field": ("events.finish.guard", "unknown field(s) ['redy']"),
    "guard_literal_of_the_wrong_type": ("events.finish.guard", "compares 'count' with '0': the field is an integer"),
    "guard_in_without_a_list": ("events.finish.guard", "'in' takes a list literal on its right"),
    "unknown_key": ("states.done.colour", "Extra inputs are not permitted"),
    "unknown_ladder": ("states.draft.timers.draft_due.escalation", "unknown ladder 'standrad'"),
    "on_due_event_not_for_system": ("states.draft.timers.draft_due.on_due", "must allow role 'system'"),
    "label_missing_language": ("states.done.label.en", "Field required"),
    "default_branch_not_last": ("events.finish.branches.0", "only the last branch may omit 'when'"),
    "initial_state_unknown": ("initial", "unknown state 'drafting'"),
    "mixed_unit_reminders": ("states.draft.timers.draft_due.reminders", "timer draft_due: reminders mix units (days, working_days)"),
    "mixed_unit_ladder": ("states.draft.timers.draft_due.escalation", "timer draft_due: escalation levels mix units"),
}


def problems_of(path: Path) -> list[DefinitionProblem]:
    with pytest.raises(DefinitionError) as caught:
        load_definition(path)
    assert caught.value.problems, "a DefinitionError must carry at least one problem"
    return caught.value.problems


def marked_line(path: Path) -> int:
    lines = [n for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if MARKER in text]
    assert len(lines) == 1, f"{path.name} must mark exactly one line with {MARKER!r}"
    return lines[0]


# -------------------------------------------------------------------------------- broken fixtures


def test_every_broken_fixture_has_an_expectation_and_every_expectation_a_fixture() -> None:
    assert {p.stem for p in BROKEN.glob("*.yaml")} == set(EXPECTED)


def test_the_minimal_definition_the_broken_fixtures_derive_from_is_valid() -> None:
    definition = load_definition(MINIMAL)
    assert definition.key == ("minimal", 1)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_broken_definition_names_file_line_and_key_of_its_problem(name: str) -> None:
    path = BROKEN / f"{name}.yaml"
    key, message = EXPECTED[name]
    problems = problems_of(path)
    for problem in problems:
        assert problem.file == str(path)
        assert problem.line is not None, problem
        assert key in problem.key, problem
    matching = [p for p in problems if message in p.message]
    assert len(matching) == 1, [str(p) for p in problems]
    assert matching[0].line == marked_line(path), str(matching[0])


def test_a_union_field_reports_the_nested_problem_not_that_it_is_not_a_string() -> None:
    # Regression: an inline ladder with a bad level also reported "escalation: Input should be a valid
    # string" (pydantic's error for the other member of ``str | list[LadderLevel]``).
    problems = problems_of(BROKEN / "negative_ladder_offset.yaml")
    assert [p.key for p in problems] == ["states.draft.timers.draft_due.escalation.1.after"]


def test_an_event_to_an_unknown_state_does_not_report_a_phantom_state() -> None:
    # Regression: reachability followed the typo and reported "states.cancelled: no path to an end state".
    problems = problems_of(BROKEN / "unknown_state_in_to.yaml")
    assert [p.key for p in problems] == ["events.cancel.to"]


def test_a_duplicate_key_names_where_it_was_first_given() -> None:
    path = BROKEN / "duplicate_event.yaml"
    (problem,) = problems_of(path)
    first = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text == "  finish:")
    assert problem.message == f"duplicate key 'finish': first given on line {first}"


def test_a_duplicate_key_in_a_flow_mapping_is_named_by_its_path() -> None:
    text = MINIMAL.read_text().replace("set: {ready: true}", "set: {ready: true, ready: false}")
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, "flow.yaml")
    (problem,) = caught.value.problems
    assert problem.key == "events.mark_ready.set.ready"
    assert problem.file == "flow.yaml"


def test_a_directory_of_broken_definitions_is_reported_file_by_file_without_raising() -> None:
    good, problems = load_directory(BROKEN)
    assert good == []
    assert {Path(p.file).stem for p in problems} == set(EXPECTED)


# ------------------------------------------------------------------------------ all the problems


def test_every_shape_problem_in_a_file_is_reported_not_only_the_first() -> None:
    text = (
        MINIMAL.read_text()
        .replace("version: 1", 'version: "one"')
        .replace("unit: working_days", "unit: weeks")
        .replace("roles: [system]", "roles: [robot]")
    )
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, "three.yaml")
    assert sorted(p.key for p in caught.value.problems) == [
        "events.mark_overdue.roles.0",
        "states.draft.timers.draft_due.unit",
        "version",
    ]


def test_every_meaning_problem_in_a_file_is_reported_not_only_the_first() -> None:
    text = (
        MINIMAL.read_text()
        .replace("escalation: standard", "escalation: standrad")
        .replace('guard: "data.ready == true"', 'guard: "data.redy == true"')
        .replace("from: [draft]\n    set: {ready", "from: [drafting]\n    set: {ready")
    )
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, "three.yaml")
    assert sorted(p.key for p in caught.value.problems) == [
        "events.finish.guard",
        "events.mark_ready.from.0",
        "states.draft.timers.draft_due.escalation",
    ]
    assert all(p.line is not None for p in caught.value.problems)


def test_a_file_that_cannot_be_read_is_a_definition_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(DefinitionError) as caught:
        load_definition(missing)
    assert caught.value.problems[0].file == str(missing)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "name: x\n"])
def test_a_file_that_is_not_a_definition_mapping_is_a_definition_error(text: str) -> None:
    with pytest.raises(DefinitionError):
        parse_definition(text, "odd.yaml")


MINIMAL_LINES = MINIMAL.read_text(encoding="utf-8").splitlines()
odd_values = st.sampled_from(["", "-1", "0", "[]", "{}", "null", "'*'", "x", "[x]", "{x: 1}", "true", "2.5"])


@settings(max_examples=300, deadline=None)
@given(line=st.integers(min_value=0, max_value=len(MINIMAL_LINES) - 1), value=odd_values, drop=st.booleans())
def test_a_damaged_definition_loads_or_raises_a_definition_error_and_nothing_else(line: int, value: str, drop: bool) -> None:
    lines = list(MINIMAL_LINES)
    if drop:
        del lines[line]
    else:
        lines[line] = re.sub(r":\s.*$", f": {value}", lines[line]) if ":" in lines[line] else value
    try:
        parse_definition("\n".join(lines), "damaged.yaml")
    except DefinitionError as exc:
        assert exc.problems and all(p.file == "damaged.yaml" for p in exc.problems)


# ------------------------------------------------------------------------------------- shipped


def test_the_shipped_definitions_load_without_problems() -> None:
    good, problems = load_directory(WORKFLOWS)
    assert [str(p) for p in problems] == []
    assert sorted(d.key for d in good) == [("corrective_action", 1), ("corrective_action", 2), ("qms_lifecycle", 1), ("qms_lifecycle", 2)]


def test_a_name_and_version_defined_twice_in_a_directory_is_reported(tmp_path: Path) -> None:
    shutil.copy(WORKFLOWS / "corrective_action.v1.yaml", tmp_path / "a_corrective_action.yaml")
    shutil.copy(WORKFLOWS / "corrective_action.v1.yaml", tmp_path / "b_corrective_action.yaml")
    good, problems = load_directory(tmp_path)
    assert [d.path for d in good] == [str(tmp_path / "a_corrective_action.yaml")]
    (problem,) = problems
    assert problem.file == str(tmp_path / "b_corrective_action.yaml")
    assert problem.key == "version"
    assert problem.line is not None
    assert "corrective_action v1 is also defined in" in problem.message


def test_the_corrective_action_review_is_an_exclusive_gateway_with_two_branches() -> None:
    definition = load_definition(WORKFLOWS / "corrective_action.v1.yaml")
    review = [t for t in definition.transitions if t.event == "review"]
    assert [(t.source, t.dest) for t in review] == [("reported", "accepted"), ("reported", "reopened")]
    accepted, default = review
    assert accepted.when is not None and default.when is None
    assert accepted.when.evaluate({"decision": "accepted"})
    assert not accepted.when.evaluate({"decision": "not_accepted"})


def test_an_event_without_to_or_branches_records_data_and_stays() -> None:
    definition = load_definition(WORKFLOWS / "corrective_action.v1.yaml")
    overdue = [t for t in definition.transitions if t.event == "mark_overdue"]
    assert {(t.source, t.dest) for t in overdue} == {("open", None), ("reopened", None)}


def test_an_event_from_any_state_fires_from_every_state_but_the_ends() -> None:
    definition = load_definition(WORKFLOWS / "qms_lifecycle.v1.yaml")
    assert definition.sources("withdraw") == set(definition.spec.states) - definition.end_states()


def test_timers_get_their_ladder_whether_shared_or_inline() -> None:
    definition = load_definition(WORKFLOWS / "corrective_action.v1.yaml")
    assert [lv.target.value for lv in definition.ladder("open.report_due")] == [
        "unit_head",
        "supervisor",
        "lead",
        "provincial_pc",
    ]
    assert [lv.after for lv in definition.ladder("reported.review_due")] == [0, 10]


START_APPLYING_GUARD = (
    '"data.committee_decision_number != null and data.documents_issued_on != null and data.procedure_count > 0"'
)


@pytest.mark.parametrize(
    ("guard", "message"),
    [
        ("data.procedure_count > '0'", "compares 'procedure_count' with '0': the field is an integer"),
        ("data.procedure_count in [1, 'two']", "compares 'procedure_count' with 'two': the field is an integer"),
        ("data.procedure_count == true", "compares 'procedure_count' with True: the field is an integer"),
        ("data.documents_issued_on >= '2026-13-01'", "the field is a date, written 'YYYY-MM-DD'"),
        ("data.documents_issued_on >= 20260101", "the field is a date"),
        ("data.committee_decision_number == 7", "the field is text"),
        ("data.procedure_count > data.documents_issued_on", "compares 'procedure_count' (integer) with 'documents_issued_on' (date)"),
        ("data.overdue == 'no'", "the field is a boolean"),
    ],
)
def test_a_literal_of_the_wrong_type_for_its_field_is_refused_at_load(guard: str, message: str) -> None:
    text = (WORKFLOWS / "qms_lifecycle.v1.yaml").read_text(encoding="utf-8")
    assert START_APPLYING_GUARD in text
    changed = text.replace(START_APPLYING_GUARD, f'"{guard}"')
    line = next(n for n, t in enumerate(changed.splitlines(), 1) if guard in t)
    with pytest.raises(DefinitionError) as caught:
        parse_definition(changed, "qms_lifecycle.v1.yaml")
    assert [(p.file, p.line, p.key) for p in caught.value.problems] == [("qms_lifecycle.v1.yaml", line, "events.start_applying.guard")]
    assert message in caught.value.problems[0].message


@pytest.mark.parametrize(
    "guard",
    [
        "data.procedure_count > -1",
        "data.documents_issued_on >= '2026-01-01'",
        "data.overdue == false and data.committee_decision_number != null",
        "data.procedure_count in [1, 2]",
    ],
)
def test_a_literal_of_the_fields_type_loads(guard: str) -> None:
    text = (WORKFLOWS / "qms_lifecycle.v1.yaml").read_text(encoding="utf-8")
    parse_definition(text.replace(START_APPLYING_GUARD, f'"{guard}"'), "qms_lifecycle.v1.yaml")


def test_a_branch_compares_a_choice_field_with_its_choices_only() -> None:
    text = (WORKFLOWS / "corrective_action.v1.yaml").read_text(encoding="utf-8")
    changed = text.replace("data.decision == 'accepted'", "data.decision == 'acepted'")
    with pytest.raises(DefinitionError) as caught:
        parse_definition(changed, "corrective_action.v1.yaml")
    (problem,) = caught.value.problems
    assert problem.key == "events.review.branches.0.when"
    assert "one of ['accepted', 'not_accepted']" in problem.message
