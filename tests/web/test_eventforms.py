"""Event forms from the definition's typed fields: labels, required marks, dd/mm/yyyy, errors in words."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from flask import Flask, session

from qmsflow.engine import Registry
from qmsflow.engine.actions import AllowedEvent
from qmsflow.engine.errors import FieldProblem
from qmsflow.web import i18n
from qmsflow.web.eventforms import all_problems, build_form, parse_day, read_submission

TODAY = date(2026, 1, 5)


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test"
    i18n.init_app(app)
    return app


@pytest.fixture
def vi(app: Flask) -> Iterator[None]:
    with app.test_request_context():
        yield


@pytest.fixture
def en(app: Flask) -> Iterator[None]:
    with app.test_request_context():
        session["lang"] = "en"
        yield


def _allowed(registry: Registry, workflow: str, event: str) -> AllowedEvent:
    spec = registry.latest(workflow).spec.events[event]
    return AllowedEvent(event, spec.label.vi, tuple(spec.fields), True, None)


@pytest.mark.parametrize(
    ("text", "day"),
    [("05/01/2026", date(2026, 1, 5)), ("5/1/2026", date(2026, 1, 5)), (" 31/12/2025 ", date(2025, 12, 31)), ("2026-01-05", date(2026, 1, 5))],
)
def test_dates_are_read_day_first(text: str, day: date) -> None:
    assert parse_day(text) == day


@pytest.mark.parametrize("text", ["01-05-2026", "5/1/26", "31/02/2026", "13/13/2026", "hôm nay", ""])
def test_anything_else_is_not_a_date(text: str) -> None:
    with pytest.raises(ValueError):
        parse_day(text)


def test_a_form_has_each_field_labelled_in_the_readers_language_with_its_required_mark(
    registry: Registry, vi: None
) -> None:
    definition = registry.latest("qms_lifecycle")
    form = build_form(definition, _allowed(registry, "qms_lifecycle", "notify_lead"), version=7, language="vi")
    assert [(f.name, f.label, f.kind, f.required) for f in form.fields] == [
        ("notice_number", "Số văn bản thông báo", "text", True),
        ("notice_sent_on", "Ngày gửi", "date", True),
        ("posted_on_website", "Đã đăng trên trang thông tin điện tử", "boolean", True),
    ]
    assert form.fields[2].choices == (("true", "Có"), ("false", "Không"))
    assert form.version == 7 and form.summary == [] and not form.check_answers
    assert form.fields[0].input_id == "notify_lead--notice_number" and form.fields[0].max_length == 64


def test_a_refused_form_keeps_what_was_typed_and_says_each_problem_next_to_its_field(registry: Registry, vi: None) -> None:
    definition = registry.latest("qms_lifecycle")
    submitted = {"plan_number": "x" * 65, "plan_approved_on": "31/02/2026", "comment": "<b>ghi chú</b>"}
    submission = read_submission(definition, "approve_plan", submitted)
    problems = all_problems(definition, "approve_plan", submission, TODAY)
    form = build_form(definition, _allowed(registry, "qms_lifecycle", "approve_plan"), version=1, language="vi",
                      submission=submission, problems=problems)
    number, day = form.fields
    assert (number.value, day.value, form.comment) == ("x" * 65, "31/02/2026", "<b>ghi chú</b>")
    assert number.error == "“Số kế hoạch” dài quá 64 ký tự."
    assert day.error == "“Ngày phê duyệt” không phải là một ngày có thật."
    assert [anchor for anchor, _ in form.summary] == ["approve_plan--plan_number", "approve_plan--plan_approved_on"]


def test_a_date_after_today_and_a_missing_choice_are_said_in_english_too(registry: Registry, en: None) -> None:
    definition = registry.latest("corrective_action")
    submission = read_submission(definition, "review", {"reviewed_on": "6/1/2026", "reply_number": "9/SKHCN"})
    assert submission.data == {"reviewed_on": "2026-01-06", "reply_number": "9/SKHCN"}
    problems = all_problems(definition, "review", submission, TODAY)
    form = build_form(definition, _allowed(registry, "corrective_action", "review"), version=3, language="en",
                      submission=submission, problems=problems)
    errors = {f.name: f.error for f in form.fields}
    assert errors["decision"] == "Choose “Decision”."
    assert errors["reviewed_on"] == "“Answered on” cannot be after today (05/01/2026)."
    assert form.fields[0].choices == (("accepted", "Accepted"), ("not_accepted", "Not accepted"))


def test_a_guard_refusal_is_said_above_the_fields_and_file_problems_by_the_file_input(registry: Registry, vi: None) -> None:
    definition = registry.latest("qms_lifecycle")
    problems = [
        FieldProblem("guard", "guard", {"event": "start_applying", "reason": "raw"}),
        FieldProblem("committee_decision_number", "undecided"),
        FieldProblem("file", "file_type", {"reason": "only PDF"}),
    ]
    form = build_form(definition, _allowed(registry, "qms_lifecycle", "start_applying"), version=4, language="vi", problems=problems)
    assert form.general_error == (
        "Cần có quyết định thành lập Ban chỉ đạo ISO và quy trình đã ban hành "
        "Hồ sơ chưa có “Số quyết định”, nên chưa làm được bước này."
    )
    assert form.evidence_error is not None and form.evidence_error.startswith("Chỉ nhận tệp PDF, JPEG hoặc PNG")
    assert form.summary == [("start_applying--evidence", form.evidence_error)]


def test_withdraw_and_a_scope_change_get_a_check_your_answers_step(registry: Registry, vi: None) -> None:
    definition = registry.latest("qms_lifecycle")
    for event, expected in (("withdraw", True), ("change_scope", True), ("record_improvement", False)):
        assert build_form(definition, _allowed(registry, "qms_lifecycle", event), version=1, language="vi").check_answers is expected
