"""Languages: Vietnamese by default, English on request; dates, times and numbers the Vietnamese way.

The catalogues are the ``.po`` files under ``web/translations/{vi,en}/LC_MESSAGES/``, compiled in
memory when the app starts (a few milliseconds), so there is no ``.mo`` file to forget to build
and the two-command set-up of the README needs no extra step. ``scripts/translations`` extracts
new strings from the code and templates into both catalogues.

The message ids are the Vietnamese text itself: the default language reads naturally in the code
and templates, and the English catalogue translates it. The choice of language is kept in the
session (signed in or not); a ``language`` column on users, when there is one, wins after sign-in.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from flask import Flask, g, session
from flask_babel import Babel, Domain, format_decimal, get_locale

from ..engine.clock import LOCAL_TZ

LANGUAGES = ("vi", "en")
LANGUAGE_NAMES = {"vi": "Tiếng Việt", "en": "English"}
TRANSLATIONS = Path(__file__).parent / "translations"
DATE_FORMAT = "%d/%m/%Y"
TIME_FORMAT = "%H:%M"


def compile_catalogues(directory: Path = TRANSLATIONS) -> dict[str, Translations]:
    """Read every ``LANG/LC_MESSAGES/messages.po`` under ``directory`` and compile it in memory."""
    compiled: dict[str, Translations] = {}
    for language in LANGUAGES:
        path = directory / language / "LC_MESSAGES" / "messages.po"
        with path.open("rb") as po:
            catalog = read_po(po, locale=language)
        buffer = BytesIO()
        write_mo(buffer, catalog, use_fuzzy=False)
        buffer.seek(0)
        compiled[language] = Translations(buffer, domain="messages")
    return compiled


class CompiledDomain(Domain):
    """A Flask-Babel domain answering from catalogues compiled at start, not from ``.mo`` files."""

    def __init__(self, catalogues: dict[str, Translations]) -> None:
        super().__init__()
        self.catalogues = catalogues

    def get_translations(self) -> Translations | NullTranslations:
        """The current locale's catalogue."""
        return self.catalogues.get(str(get_locale()), NullTranslations())


class _Babel(Babel):
    def __init__(self, app: Flask, domain: CompiledDomain, **kwargs: Any) -> None:
        self._compiled_domain = domain
        super().__init__(app, **kwargs)

    @property
    def domain_instance(self) -> Domain:
        return self._compiled_domain


def current_language() -> str:
    """The language of this request: the user's, else the session's choice, else Vietnamese."""
    user = g.get("user")
    for chosen in (getattr(user, "language", None), session.get("lang")):
        if chosen in LANGUAGES:
            return str(chosen)
    return "vi"


def format_day(value: date | datetime | None) -> str:
    """``dd/mm/yyyy`` (an instant: its day in Vietnam)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(LOCAL_TZ)
    return value.strftime(DATE_FORMAT)


def format_instant(value: datetime | None) -> str:
    """``dd/mm/yyyy HH:mm`` in Asia/Ho_Chi_Minh."""
    if value is None:
        return ""
    return value.astimezone(LOCAL_TZ).strftime(f"{DATE_FORMAT} {TIME_FORMAT}")


def format_clock(value: datetime | None) -> str:
    """``HH:mm`` in Asia/Ho_Chi_Minh."""
    if value is None:
        return ""
    return value.astimezone(LOCAL_TZ).strftime(TIME_FORMAT)


def format_number(value: int | float | Decimal | None) -> str:
    """A number with the language's separators (Vietnamese: ``1.234.567,5``)."""
    if value is None:
        return ""
    return str(format_decimal(value))


def init_app(app: Flask) -> None:
    """Attach Flask-Babel with the compiled catalogues and the date, time and number filters."""
    domain = CompiledDomain(compile_catalogues())
    _Babel(app, domain, locale_selector=current_language, default_timezone="Asia/Ho_Chi_Minh")
    app.jinja_env.filters.update(day=format_day, instant=format_instant, clock=format_clock, number=format_number)
    app.jinja_env.globals.update(LANGUAGES=LANGUAGES, LANGUAGE_NAMES=LANGUAGE_NAMES, current_language=current_language)


__all__ = [
    "LANGUAGES",
    "LANGUAGE_NAMES",
    "CompiledDomain",
    "compile_catalogues",
    "current_language",
    "format_clock",
    "format_day",
    "format_instant",
    "format_number",
    "init_app",
]
