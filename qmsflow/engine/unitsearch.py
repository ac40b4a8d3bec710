"""Finding units by name or code the way people type them: accents, đ/d, tone placement and capitals folded.

Two forms of every word of a unit version's name and code are stored (migration 0009):

- **folded**: no marks at all, đ as d, lower case (``"Phường Long Xuyên"`` -> ``phuong long xuyen``);
- **marked**: lower case and NFC with its vowel marks and đ kept, and the tone kept apart as one
  letter (``f s r x j``, Telex's), so where a tone mark sits no longer matters: ``Hoà`` and ``Hòa``
  are both ``hoa`` + ``f``, while ``Thạnh`` (``thanh`` + ``j``) and ``Thành`` (``thanh`` + ``f``) stay apart.

A query word typed without any mark matches the folded form ("long xuyen" finds "Long Xuyên",
"dong" finds "Đông", "thanh" finds both Thạnh and Thành); a query word with marks matches the marked
form, its tone exactly (Bình Thạnh and Bình Thành are different communes). Each query word must be
the beginning of some word of the name or code (word-prefix matching), and every query word must match.

**The access path** is a btree index, the same on SQLite and PostgreSQL: the words live in
``unit_search_words`` (one row per distinct word of a version), indexed on ``(folded,
unit_version_id)`` and ``(marked_base, tone, unit_version_id)``, and a prefix is a range ``word >= q
AND word < q'`` (``q'`` is ``q`` with its last character raised by one), which both planners answer
with an index range scan; the columns use the ``C`` collation on PostgreSQL so that the range is
code-point order whatever the database's collation. A trigram index (pg_trgm, SQLite FTS5) would
also match inside words, which nobody asked for, and would need two different schemas.
``unit_versions.search_folded`` holds the whole folded text of the version, for reading and checks.

The words are written by ORM hooks on every insert and update of a ``UnitVersion`` (so every write
path of qmsflow/engine/units.py keeps them in step, and any later one that goes through the ORM); a
bulk load that inserts versions with Core statements calls ``reindex`` afterwards.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, event, insert, select, true, update
from sqlalchemy.orm import Mapper, Session

from .models import UnitSearchWord, UnitVersion

# The five Vietnamese tone marks as combining characters (and the two deprecated tone-mark code
# points some keyboards still send), each with its Telex letter.
_TONES = {"\u0300": "f", "\u0340": "f", "\u0301": "s", "\u0341": "s", "\u0309": "r", "\u0303": "x", "\u0323": "j"}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_QUERY_WORDS = 8
WORD_LENGTH = 64


@dataclass(frozen=True)
class Word:
    """One word in its forms: ``folded`` (no marks), ``marked_base`` (vowel marks and đ kept, no tone), ``tone``."""

    folded: str
    marked_base: str
    tone: str

    @property
    def has_marks(self) -> bool:
        """Whether the word was typed with any mark (a tone, a vowel mark or đ)."""
        return bool(self.tone) or self.marked_base != self.folded


def _word(raw: str) -> Word:
    decomposed = unicodedata.normalize("NFD", raw.lower())
    tone = "".join(sorted({_TONES[c] for c in decomposed if c in _TONES}))
    base = unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in _TONES))
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).replace("đ", "d")
    return Word(folded[:WORD_LENGTH], base[:WORD_LENGTH], tone)


def words(text: str) -> list[Word]:
    """Split ``text`` into words (letters and digits; anything else separates), each in its forms."""
    return [_word(w) for w in _WORD.findall(unicodedata.normalize("NFC", text or ""))]


def fold(text: str) -> str:
    """Return ``text`` without marks, đ as d, in lower case, its words separated by one space."""
    return " ".join(w.folded for w in words(text))


def searchable_text(name: str, code: str) -> str:
    """The folded text stored for a version: its name, then its code."""
    return fold(f"{name} {code}")[:300]


def _after(prefix: str) -> str:
    """The smallest string greater than every string that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def matches(query: str, version_id: Any = UnitVersion.id) -> ColumnElement[bool]:
    """SQL: the unit version ``version_id`` (a column) has, for every word of ``query``, a word it begins.

    An empty query matches everything. Words beyond the eighth are ignored (a search box, not a document).
    """
    conditions = []
    for word in words(query)[:MAX_QUERY_WORDS]:
        if word.has_marks:
            hit = and_(UnitSearchWord.marked_base >= word.marked_base, UnitSearchWord.marked_base < _after(word.marked_base))
            if word.tone:
                hit = and_(hit, UnitSearchWord.tone == word.tone)
        else:
            hit = and_(UnitSearchWord.folded >= word.folded, UnitSearchWord.folded < _after(word.folded))
        conditions.append(version_id.in_(select(UnitSearchWord.unit_version_id).where(hit)))
    return and_(*conditions) if conditions else true()


def _rows(version_id: int, name: str, code: str) -> list[dict[str, Any]]:
    seen: set[Word] = set()
    rows = []
    for word in words(f"{name} {code}"):
        if word in seen:
            continue
        seen.add(word)
        rows.append({"unit_version_id": version_id, "folded": word.folded, "marked_base": word.marked_base, "tone": word.tone})
    return rows


def _write_words(connection: Connection, version_id: int, name: str, code: str) -> None:
    connection.execute(delete(UnitSearchWord).where(UnitSearchWord.unit_version_id == version_id))
    rows = _rows(version_id, name, code)
    if rows:
        connection.execute(insert(UnitSearchWord), rows)


def reindex(session: Session, version_ids: Iterable[int] | None = None) -> int:
    """Write the search words and folded text of the given versions (all when None) again; return how many.

    For bulk loads that insert ``unit_versions`` with Core statements, and for repairs.
    """
    query = select(UnitVersion.id, UnitVersion.name, UnitVersion.code)
    if version_ids is not None:
        query = query.where(UnitVersion.id.in_(list(version_ids)))
    connection = session.connection()
    count = 0
    for version_id, name, code in session.execute(query).all():
        _write_words(connection, version_id, name, code)
        connection.execute(
            update(UnitVersion).where(UnitVersion.id == version_id).values(search_folded=searchable_text(name, code))
        )
        count += 1
    return count


@event.listens_for(UnitVersion, "before_insert")
@event.listens_for(UnitVersion, "before_update")
def _fold_before_write(mapper: Mapper[Any], connection: Connection, target: UnitVersion) -> None:
    target.search_folded = searchable_text(target.name, target.code)


@event.listens_for(UnitVersion, "after_insert")
@event.listens_for(UnitVersion, "after_update")
def _words_after_write(mapper: Mapper[Any], connection: Connection, target: UnitVersion) -> None:
    _write_words(connection, target.id, target.name, target.code)


__all__ = ["MAX_QUERY_WORDS", "Word", "fold", "matches", "reindex", "searchable_text", "words"]
