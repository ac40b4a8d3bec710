"""Event forms generated from a definition's typed fields, and what a submitted form asks of the engine.

A form has one input per field of the event, labelled in the reader's language, with a "required"
mark; a comment; evidence files; and the case version it was loaded at, so the engine can tell
whether it has gone stale (qmsflow/engine/staleness.py).

Dates are typed as text ``dd/mm/yyyy`` (``d/m/yyyy`` too): a native date input shows the order
of the operating system, which on an office PC is often the American one. The web turns the text
into the ISO date the engine takes; everything else is checked by the engine alone
(``fields.clean_fields``), whose problems come back with codes and are said here in words, next
to their fields, with what the person typed kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..engine.actions import AllowedEvent
from ..engine.definitions import Definition, FieldSpec
from ..engine.errors import FieldProblem
from ..engine.fields import clean_fields
from ..engine.mywork import CONFIRM_ON_CASE_PAGE
from . import i18n

_DAY = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{1,2})\s*/\s*(\d{4})\s*$")
_ISO = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$")

COMMENT = "comment"
EVIDENCE = "evidence"
VERSION = "version"

# The definitions name their choices by code; these are the words for the ones the shipped workflows use.
CHOICE_LABELS = {
    "accepted": _l("Chấp nhận"),
    "not_accepted": _l("Không chấp nhận"),
}

KINDS = {"string": "text", "text": "textarea", "date": "date", "integer": "integer", "boolean": "boolean", "choice": "choice"}


@dataclass(frozen=True)
class FormField:
    """One input of an event form, ready for the template."""

    name: str  # the definition's field name, also the input's name
    input_id: str  # unique on a page with several forms
    label: str
    kind: str  # text | textarea | date | integer | boolean | choice
    required: bool
    value: str  # as the person typed it, or as the case holds it
    error: str | None
    choices: tuple[tuple[str, str], ...] = ()  # (value, words)
    max_length: int | None = None


@dataclass(frozen=True)
class EventForm:
    """The form of one event on one case."""

    event: str
    label: str
    fields: tuple[FormField, ...]
    version: int
    enabled: bool
    reason: str | None  # why the event cannot fire now (its guard), when it cannot
    comment: str = ""
    comment_error: str | None = None
    evidence_error: str | None = None
    general_error: str | None = None  # the guard's or the branches' refusal, above the fields
    check_answers: bool = False  # withdraw and change_scope: a check-your-answers step first

    @property
    def summary(self) -> list[tuple[str, str]]:
        """The error summary: (input id, message) for each input in error, in the form's order."""
        out = [(f.input_id, f.error) for f in self.fields if f.error]
        if self.comment_error:
            out.append((self.comment_id, self.comment_error))
        if self.evidence_error:
            out.append((self.evidence_id, self.evidence_error))
        return out

    @property
    def comment_id(self) -> str:
        """The comment input's id."""
        return f"{self.event}--{COMMENT}"

    @property
    def evidence_id(self) -> str:
        """The file input's id."""
        return f"{self.event}--{EVIDENCE}"


@dataclass(frozen=True)
class Submission:
    """A submitted event form, read: the data for the engine, and problems the web found itself."""

    data: dict[str, Any]
    raw: dict[str, str]  # what was typed, to show again
    comment: str
    problems: list[FieldProblem]


def parse_day(text: str) -> date:
    """Return the date written ``dd/mm/yyyy`` or ``d/m/yyyy`` (or ``yyyy-mm-dd``); ValueError otherwise."""
    if _ISO.match(text):
        return date.fromisoformat(text.strip())
    found = _DAY.match(text)
    if found is None:
        raise ValueError("not dd/mm/yyyy")
    day, month, year = (int(part) for part in found.groups())
    return date(year, month, day)


def show_day(iso: object) -> str:
    """An ISO date as ``dd/mm/yyyy``; anything else as it is."""
    if isinstance(iso, str) and _ISO.match(iso):
        return i18n.format_day(date.fromisoformat(iso))
    return "" if iso is None else str(iso)


def read_fields(specs: Mapping[str, FieldSpec], form: Mapping[str, str]) -> Submission:
    """Read the submitted values of ``specs``: dates turned to ISO, the rest handed on as typed."""
    raw = {name: str(form.get(name, "")) for name in specs}
    data: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for name, field in specs.items():
        value = raw[name].strip()
        if not value:
            continue
        if field.type == "date":
            try:
                data[name] = parse_day(value).isoformat()
            except ValueError:
                unreal = _DAY.match(value) is not None  # the shape is right, the day does not exist
                code = "date_unreal" if unreal else "date_format"
                problems.append(FieldProblem(name, code))
        else:
            data[name] = value
    return Submission(data, raw, str(form.get(COMMENT, "")), problems)


def read_submission(definition: Definition, event: str, form: Mapping[str, str]) -> Submission:
    """Read a submitted form of ``event``."""
    return read_fields(definition.spec.events[event].fields, form)


def check_fields(specs: Mapping[str, FieldSpec], submission: Submission, today: date) -> list[FieldProblem]:
    """The web's own problems, and the engine's field checks for the other fields (nothing is written)."""
    mine = {p.field for p in submission.problems}
    _, engine = clean_fields(specs, submission.data, today)
    return [*submission.problems, *(p for p in engine if p.field not in mine)]


def all_problems(definition: Definition, event: str, submission: Submission, today: date) -> list[FieldProblem]:
    """``check_fields`` for the fields of ``event``."""
    return check_fields(definition.spec.events[event].fields, submission, today)


def _field_label(definition: Definition, name: str, language: str) -> str:
    """The label of a field anywhere in the definition (a guard may read a field of another event)."""
    for fields in (definition.spec.start_fields, *(e.fields for e in definition.spec.events.values())):
        if name in fields:
            return fields[name].label.get(language)
    return name


def problem_message(problem: FieldProblem, label: str, spec: FieldSpec | None = None) -> str:
    """Say a field problem in the reader's language, naming the field by its label."""
    code, params = problem.code, problem.params
    choosing = spec is not None and spec.type in ("boolean", "choice")
    if code == "required":
        return _("Hãy chọn “%(label)s”.", label=label) if choosing else _("Hãy nhập “%(label)s”.", label=label)
    if code in ("not_a_date", "date_with_time", "date_format"):
        return _("“%(label)s” phải là ngày theo dạng ngày/tháng/năm, ví dụ 05/01/2026.", label=label)
    if code in ("not_a_real_date", "date_unreal"):
        return _("“%(label)s” không phải là một ngày có thật.", label=label)
    if code == "not_in_future":
        return _("“%(label)s” không được sau hôm nay (%(today)s).", label=label, today=show_day(params.get("today")))
    if code == "max_length":
        return _("“%(label)s” dài quá %(max)s ký tự.", label=label, max=i18n.format_number(int(str(params.get("n", 0)))))
    if code == "not_a_whole_number":
        return _("“%(label)s” phải là một số nguyên, ví dụ 12.", label=label)
    if code == "negative":
        return _("“%(label)s” không được là số âm.", label=label)
    if code == "not_a_boolean":
        return _("Hãy chọn Có hoặc Không cho “%(label)s”.", label=label)
    if code == "not_a_choice":
        return _("Hãy chọn một phương án trong danh sách cho “%(label)s”.", label=label)
    if code == "not_text":
        return _("“%(label)s” phải là chữ.", label=label)
    if code == "unknown_field":
        return _("Biểu mẫu có trường “%(label)s” không thuộc việc này.", label=label)
    if code == "undecided":
        return _("Hồ sơ chưa có “%(label)s”, nên chưa làm được bước này.", label=label)
    if code == "no_branch":
        return _("Với dữ liệu đã nhập, không xác định được bước tiếp theo của hồ sơ.")
    return file_message(problem) or problem.render(i18n.current_language())


def file_message(problem: FieldProblem) -> str | None:
    """Say an evidence file's problem in the reader's language (None for a problem that is not a file's)."""
    code = problem.code
    if code == "file_type":
        return _("Chỉ nhận tệp PDF, JPEG hoặc PNG; loại tệp được xác định theo nội dung, không theo tên.")
    if code == "file_broken":
        return _("Tệp bị hỏng hoặc không đúng định dạng nên không đọc được. Hãy quét hoặc xuất lại tệp.")
    if code == "file_encrypted":
        return _("Tệp PDF có mật khẩu nên không lưu làm minh chứng được. Hãy gửi bản không đặt mật khẩu.")
    if code == "file_too_large":
        megabytes = int(str(problem.params.get("max_bytes", 0))) // (1024 * 1024)
        return _("Tệp lớn quá %(size)s MB. Hãy gửi tệp nhỏ hơn.", size=i18n.format_number(megabytes))
    if code == "file_empty":
        return _("Tệp rỗng, không có nội dung.")
    if code == "file_name":
        return _("Tên tệp không dùng được. Hãy đổi tên tệp rồi gửi lại.")
    return None


def _choices(field: FieldSpec) -> tuple[tuple[str, str], ...]:
    if field.type == "boolean":
        return (("true", _("Có")), ("false", _("Không")))
    return tuple((c, str(CHOICE_LABELS.get(c, c))) for c in field.choices or [])


def build_fields(
    specs: Mapping[str, FieldSpec], prefix: str, language: str, submission: Submission | None, errors: Mapping[str, str]
) -> tuple[FormField, ...]:
    """The inputs of ``specs``, ids prefixed with ``prefix``, with what was typed and each field's message."""
    typed = submission.raw if submission else {}
    return tuple(
        FormField(
            name=name, input_id=f"{prefix}--{name}", label=field.label.get(language), kind=KINDS[field.type],
            required=field.required, value=typed.get(name, ""), error=errors.get(name),
            choices=_choices(field), max_length=field.max_length,
        )
        for name, field in specs.items()
    )


def field_messages(specs: Mapping[str, FieldSpec], problems: Iterable[FieldProblem], language: str) -> dict[str, str]:
    """Each field of ``specs`` in error, with its first problem in words."""
    errors: dict[str, str] = {}
    for problem in problems:
        if problem.field in specs:
            field = specs[problem.field]
            errors.setdefault(problem.field, problem_message(problem, field.label.get(language), field))
    return errors


def build_form(
    definition: Definition,
    allowed: AllowedEvent,
    *,
    version: int,
    language: str,
    submission: Submission | None = None,
    problems: Iterable[FieldProblem] = (),
) -> EventForm:
    """The form of ``allowed`` on a case at ``version``, with a refused submission's values and messages."""
    spec = definition.spec.events[allowed.event]
    errors: dict[str, str] = {}
    general: list[str] = []
    comment_error = evidence_error = None
    for problem in problems:
        if problem.field == "guard":
            general.append(spec.guard_message.get(language) if spec.guard_message else problem.render(language))
        elif problem.field == "branches":
            general.append(problem_message(problem, ""))
        elif problem.field == COMMENT:
            comment_error = comment_error or problem_message(problem, _("Ghi chú"))
        elif problem.field in ("file", "name", EVIDENCE):
            evidence_error = evidence_error or file_message(problem) or problem.render(language)
        elif problem.field in spec.fields:
            field = spec.fields[problem.field]
            errors.setdefault(problem.field, problem_message(problem, field.label.get(language), field))
        else:  # a field the guard needs that another event records
            general.append(problem_message(problem, _field_label(definition, problem.field, language)))
    fields = build_fields(spec.fields, allowed.event, language, submission, errors)
    return EventForm(
        event=allowed.event, label=allowed.label, fields=fields, version=version, enabled=allowed.enabled,
        reason=allowed.reason, comment=submission.comment if submission else "", comment_error=comment_error,
        evidence_error=evidence_error, general_error=" ".join(general) or None,
        check_answers=allowed.event in CONFIRM_ON_CASE_PAGE,
    )


__all__ = [
    "CHOICE_LABELS",
    "COMMENT",
    "EVIDENCE",
    "VERSION",
    "EventForm",
    "FormField",
    "Submission",
    "all_problems",
    "build_fields",
    "build_form",
    "check_fields",
    "field_messages",
    "file_message",
    "parse_day",
    "problem_message",
    "read_fields",
    "read_submission",
    "show_day",
]
