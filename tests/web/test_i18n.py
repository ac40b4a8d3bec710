"""Vietnamese by default, English on request, every string through the catalogues; dd/mm/yyyy and Vietnamese numbers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from qmsflow.engine import Database
from qmsflow.engine.models import AdminLogEntry, User
from qmsflow.web import i18n
from tests.web.conftest import post

WEB = Path(i18n.__file__).parent


def _catalogue(language: str) -> dict[str, object]:
    with (WEB / "translations" / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return {m.id if isinstance(m.id, str) else m.id[0]: m.string for m in read_po(po) if m.id}


def test_the_catalogues_hold_every_string_of_the_code_and_templates() -> None:
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    found = {
        (message if isinstance(message, str) else message[0])
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(WEB), method_map, keywords={"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "lazy_gettext": None}
        )
    }
    for language in ("vi", "en"):
        missing = found - set(_catalogue(language))
        assert not missing, f"run scripts/translations: {language} lacks {sorted(missing)[:5]}"


def test_every_english_string_is_translated() -> None:
    untranslated = [msgid for msgid, text in _catalogue("en").items() if not text or (isinstance(text, tuple) and not all(text))]
    assert not untranslated, f"fill these in qmsflow/web/translations/en: {untranslated[:5]}"


def test_the_pages_are_vietnamese_until_english_is_chosen_and_back(signed_in: Callable[[str], FlaskClient]) -> None:
    client = signed_in("tnh")
    page = client.get("/").get_data(as_text=True)
    assert '<html lang="vi">' in page and "Đăng xuất" in page
    assert post(client, "/language", {"lang": "en", "next": "/"}, page="/").headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert '<html lang="en">' in page and "Sign out" in page and "Đăng xuất" not in page
    post(client, "/language", {"lang": "vi", "next": "/"}, page="/")
    assert "Đăng xuất" in client.get("/").get_data(as_text=True)


def test_a_signed_in_persons_choice_is_their_own_in_every_session_and_logged(
    signed_in: Callable[[str], FlaskClient], db: Database
) -> None:
    post(signed_in("tnh"), "/language", {"lang": "en", "next": "/"}, page="/")
    with db.read() as session:  # stored on the user, so their emails and digests follow it
        assert session.scalar(select(User.language).where(User.username == "tnh")) == "en"
        assert session.scalar(select(func.count()).select_from(AdminLogEntry).where(AdminLogEntry.action == "user.set_language")) == 1
    assert '<html lang="en">' in signed_in("tnh").get("/").get_data(as_text=True)  # a new session of the same person


def test_error_pages_speak_the_readers_language(app: Flask) -> None:
    client = app.test_client()
    assert "Không tìm thấy trang" in client.get("/no-such-page").get_data(as_text=True)
    post(client, "/language", {"lang": "en"})
    response = client.get("/no-such-page")
    assert response.status_code == 404 and "Page not found" in response.get_data(as_text=True)


def test_the_language_switch_goes_back_only_to_this_site(app: Flask) -> None:
    client = app.test_client()
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        assert post(client, "/language", {"lang": "en", "next": target}).headers["Location"] == "/sign-in"


def test_dates_times_and_numbers_are_written_the_vietnamese_way(app: Flask) -> None:
    instant = datetime(2026, 3, 4, 17, 5, tzinfo=UTC)  # 00:05 on the 5th in Vietnam
    assert i18n.format_day(date(2026, 3, 4)) == "04/03/2026"
    assert i18n.format_day(instant) == "05/03/2026"
    assert i18n.format_instant(instant) == "05/03/2026 00:05"
    assert i18n.format_clock(instant) == "00:05"
    with app.test_request_context("/"):
        assert i18n.format_number(1234567) == "1.234.567"
        assert i18n.format_number(1234.5) == "1.234,5"
