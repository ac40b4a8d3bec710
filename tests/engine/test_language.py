"""The engine speaks in codes and parameters; each reader gets them in Vietnamese or English."""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from click.testing import Result
from sqlalchemy import select

import qmsflow
from qmsflow.engine import Database, FixedClock, GuardFailed, NotFound, Runtime, ValidationFailed, open_case
from qmsflow.engine.definitions import FieldSpec, Label
from qmsflow.engine.errors import FieldProblem
from qmsflow.engine.fields import clean_fields
from qmsflow.engine.inbox import inbox_page
from qmsflow.engine.language import CLI, ERRORS, LANGUAGES, MESSAGES, PROBLEMS, catalogue_path, describe, render
from qmsflow.engine.models import EmailMessage, User
from qmsflow.engine.notifications import MailSettings, queue_digests, route
from qmsflow.engine.permissions import Actor
from qmsflow.engine.sweep import sweep
from qmsflow.engine.users import create_user, set_language
from tests.conftest import Province, local

PACKAGE = Path(qmsflow.__file__).parent
ALL_IDS = sorted({*PROBLEMS.values(), *ERRORS.values(), *MESSAGES.values(), *CLI.values(), " on case {case_id}"})
VIETNAMESE = re.compile("[àáảãạăắằẳẵặâấầẩẫậèéẻẽẹêếềểễệìíỉĩịòóỏõọôốồổỗộơớờởỡợùúủũụưứừửữựỳýỷỹỵđ]", re.IGNORECASE)


def _catalogue(language: str) -> dict[str, str]:
    with catalogue_path(language).open("rb") as f:
        return {m.id: m.string for m in read_po(f) if m.id}


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_code_and_message_has_a_translation_with_the_same_parameters(language: str) -> None:
    catalogue = _catalogue(language)
    for message_id in ALL_IDS:
        translated = catalogue.get(message_id)
        assert translated, (language, message_id)
        assert _placeholders(translated) == _placeholders(message_id), (language, message_id)
    assert set(catalogue) == set(ALL_IDS), "the catalogue and language.py list the same messages"


def test_the_vietnamese_catalogue_is_written_in_vietnamese() -> None:
    catalogue = _catalogue("vi")
    # every sentence with words in it carries Vietnamese letters; only pure placeholders stay as they are
    for message_id in ALL_IDS:
        words = re.sub(r"\{[a-z_]+\}", "", message_id)
        if re.search("[A-Za-z]{3,}", words):
            assert VIETNAMESE.search(catalogue[message_id]), message_id


def test_every_field_problem_in_the_code_names_a_known_code() -> None:
    used: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "FieldProblem" and len(node.args) >= 2:
                code = node.args[1]
                if isinstance(code, ast.Constant) and isinstance(code.value, str):
                    used[code.value] = f"{path.name}:{node.lineno}"
    assert len(used) > 30
    unknown = {code: where for code, where in used.items() if code not in PROBLEMS}
    assert unknown == {}


SPECS = {
    "signed_on": FieldSpec(type="date", label=Label(vi="Ngày ký", en="Signed on"), required=True, not_in_future=True),
    "number": FieldSpec(type="string", label=Label(vi="Số", en="Number"), max_length=8),
}


def test_a_field_problem_is_a_code_with_parameters_rendered_in_either_language() -> None:
    _, problems = clean_fields(SPECS, {"signed_on": "2026-06-02", "number": "123456789", "colour": "red"}, date(2026, 6, 1))
    assert {(p.field, p.code, tuple(p.params.items())) for p in problems} == {
        ("colour", "unknown_field", ()),
        ("signed_on", "not_in_future", (("today", "2026-06-01"),)),
        ("number", "max_length", (("n", 8),)),
    }
    by_field = {p.field: p for p in problems}
    assert by_field["number"].message == "at most 8 characters"  # English, as before codes
    assert by_field["number"].render("vi") == "tối đa 8 ký tự"
    assert by_field["signed_on"].render("vi") == "không được sau ngày hôm nay (2026-06-01)"
    assert FieldProblem("x", "required").render("vi") == "bắt buộc phải nhập"
    error = ValidationFailed([by_field["number"]])
    assert str(error) == "number: at most 8 characters"
    assert describe(error, "vi") == "dữ liệu không hợp lệ: number: tối đa 8 ký tự"


def test_typed_errors_are_described_in_the_readers_language() -> None:
    assert describe(NotFound("case", 12), "vi") == "không tìm thấy hồ sơ 12"
    assert describe(NotFound("case", 12), "en") == "case 12 not found"
    guard = GuardFailed(3, "announce", [FieldProblem("guard", "guard", {
        "event": "announce", "reason": {"vi": "Người đứng đầu chưa xác nhận HTQLCL hiệu lực", "en": "The head has not confirmed"},
    })])
    assert describe(guard, "vi") == (
        "thao tác 'announce' bị từ chối: guard: chưa thể thực hiện announce: Người đứng đầu chưa xác nhận HTQLCL hiệu lực"
    )
    assert "The head has not confirmed" in str(guard)
    # a translation is looked up by its English text; an unknown id is shown as it is
    assert render("vi", "not a message id {x}", {"x": 1}) == "not a message id 1"


MAIL = MailSettings(enabled=True, sender="qmsflow@angiang.example")


def test_one_notification_reaches_a_vietnamese_and_an_english_reader_each_in_their_language(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    with db.write() as session:
        unit = session.merge(province.units["THCS-MT"])
        english = create_user(session, username="thcs.en", role="unit_officer", unit=unit, email="en@thcs.example",
                              language="en", now=clock.now(), rt=rt, actor=province.actors["admin"])
        open_case(session, rt, province.actors["lead"], unit, "qms_lifecycle")
    # by 3 March the plan (due 23 Feb) has escalated to the unit's head: its officers are told
    clock.set(local(date(2026, 3, 3)))
    sweep(db, rt, clock.now())
    route(db, clock.now(), MAIL)
    with db.read() as session:
        pages = {
            name: inbox_page(session, rt, actor, page_size=10).items
            for name, actor in (("vi", province.actors["thcs"]), ("en", Actor.of(session.get(User, english.id))))  # type: ignore[arg-type]
        }
        emails = dict(session.execute(
            select(EmailMessage.to_address, EmailMessage.subject).where(EmailMessage.notification_id.is_not(None))
        ).tuples().all())
    assert [i.notification_id for i in pages["vi"]] == [i.notification_id for i in pages["en"]]
    vi, en = pages["vi"][0], pages["en"][0]
    assert vi.subject.startswith("Quá hạn (cấp 1): ") and "Trường THCS Mỹ Thới" in vi.subject
    assert en.subject.startswith("Overdue (level 1): ") and "Trường THCS Mỹ Thới" in en.subject
    assert "Bước hiện tại: " in vi.body and "hạn cuối ngày 23/02/2026" in vi.body
    assert "Current step: " in en.body and "due by the end of 23/02/2026" in en.body
    # the emails too: the users' in their own language, the unit's contacts in the installation's
    assert emails["en@thcs.example"] == en.subject
    assert emails["thcs@example.org"] == vi.subject
    assert emails["head@thcs-mt.example"] == vi.subject
    # and the morning digest
    queue_digests(db, clock.now(), MAIL)
    with db.read() as session:
        digests = {
            address: (subject, body) for address, subject, body in session.execute(
                select(EmailMessage.to_address, EmailMessage.subject, EmailMessage.body).where(EmailMessage.kind == "digest")
            ).tuples()
        }
    assert digests["en@thcs.example"][0].startswith("Your items for 03/03/2026")
    assert digests["en@thcs.example"][1].startswith("Dear thcs.en,") and en.subject in digests["en@thcs.example"][1]
    assert digests["thcs@example.org"][0].startswith("Tổng hợp việc cần xử lý ngày 03/03/2026")
    assert "Kính gửi" in digests["thcs@example.org"][1] and vi.subject in digests["thcs@example.org"][1]


def test_a_users_language_is_checked_and_its_change_logged(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> None:
    with db.write() as session:
        with pytest.raises(ValidationFailed) as info:
            create_user(session, username="fr.user", role="viewer", language="fr", now=clock.now(), rt=rt, actor=province.actors["admin"])
        assert [p.code for p in info.value.problems] == ["one_of"]
        user = session.scalars(select(User).where(User.username == "tnh")).one()
        assert user.language == "vi"
        set_language(session, user, "en", rt=rt, actor=province.actors["admin"])
        assert user.language == "en"
        with pytest.raises(ValidationFailed):
            set_language(session, user, "zh", rt=rt, actor=province.actors["admin"])


def test_the_command_line_speaks_vietnamese_when_asked(run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    run("demo", "--as-of", "2026-06-01")
    case = next(c for c in __import__("json").loads(run("cases", "list", "--as", "stp.iso", "--json").output))
    shown = run("--language", "vi", "cases", "show", str(case["id"]), "--as", "stp.iso")
    assert shown.exit_code == 0, shown.output
    assert f"hồ sơ #{case['id']}" in shown.output and "lịch sử:" in shown.output
    assert "thao tác bạn có thể thực hiện: " in shown.output and "(chưa thể: Cần có quyết định" in shown.output
    refused = run("--language", "vi", "cases", "advance", str(case["id"]), "start_applying", "--as", "stp.iso")
    assert refused.exit_code == 7
    assert "lỗi: thao tác 'start_applying' bị từ chối: guard: chưa thể thực hiện start_applying: Cần có quyết định" in refused.output
    missing = run("--language", "vi", "cases", "show", "9999", "--as", "stp.iso")
    assert missing.exit_code == 4 and "lỗi: không tìm thấy hồ sơ 9999" in missing.output
    # English unless asked; the environment asks as well as the option
    assert "error: case 9999 not found" in run("cases", "show", "9999", "--as", "stp.iso").output
    monkeypatch.setenv("QMSFLOW_CLI_LANGUAGE", "vi")
    assert "lỗi: không tìm thấy hồ sơ 9999" in run("cases", "show", "9999", "--as", "stp.iso").output
    bad = run("--language", "fr", "cases", "show", "1", "--as", "stp.iso")
    assert bad.exit_code == 2


def test_rendering_in_either_language_needs_no_flask() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from qmsflow.engine import language, messages, notifications, errors; "
        "assert errors.FieldProblem('n', 'max_length', {'n': 3}).render('vi') == 'tối đa 3 ký tự'; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'flask_babel')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"
