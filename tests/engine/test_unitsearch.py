"""The unit search's fold: what must match and what must not, in the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import unicodedata
from datetime import date

import pytest
from sqlalchemy import select

from qmsflow.engine import SYSTEM, Runtime
from qmsflow.engine.db import Database
from qmsflow.engine.models import UnitSearchWord, UnitVersion
from qmsflow.engine.units import UnitKind, change_unit, create_unit
from qmsflow.engine.unitsearch import fold, matches, reindex

NFD = "NFD"

# (name stored, query typed): each query must find the name.
MUST_MATCH = [
    ("Phường Long Xuyên", "long xuyen"),
    ("Phường Long Xuyên", "Long Xuyên"),
    ("Phường Long Xuyên", "LONG XUYÊN"),
    ("Phường Long Xuyên", "xuy"),
    ("Phường Long Xuyên", "phuong long"),
    ("Xã Đông Hòa", "dong"),
    ("Xã Đông Hòa", "Đông"),
    ("Xã Đông Hòa", "đông hoa"),
    ("Xã Đông Hòa", "Hoà"),  # old-style tone placement finds the new style
    ("Xã Đông Hoà", "Hòa"),  # and the other way round
    ("Xã Đông Hoà", "hoa"),
    ("Phường Bình Thạnh", "thanh"),
    ("Phường Bình Thành", "thanh"),
    ("Phường Bình Thạnh", "Thạnh"),
    ("Phường Bình Thành", "Thành"),
    ("Trường THPT Thoại Ngọc Hầu", "thoai ngoc hau"),
    ("Trường THPT Thoại Ngọc Hầu", "THPT"),
    ("Trường THPT Thoại Ngọc Hầu", "trường thpt"),
    ("Phường Mỹ Thới", unicodedata.normalize(NFD, "Mỹ Thới")),  # NFD input, NFC name
    (unicodedata.normalize(NFD, "Phường Mỹ Thới"), "Mỹ Thới"),  # NFD name, NFC input
    ("Phường Mỹ Thới", "MY THOI"),
    ("Sở Khoa học và Công nghệ", "khoa hoc cong"),
    ("Sở Khoa học và Công nghệ", "SKHCN"),  # the code
    ("Xã Thuỷ Lợi", "Thủy"),  # uy: thuỷ / thủy
    ("Đặc khu Phú Quốc", "dac khu phu quoc"),
    ("Đặc khu Phú Quốc", "Phú"),
]

# (name stored, query typed): each query must not find the name.
MUST_NOT_MATCH = [
    ("Phường Bình Thạnh", "Thành"),  # different communes: the tone counts once a mark is typed
    ("Phường Bình Thành", "Thạnh"),
    ("Xã Đông Hòa", "Hóa"),
    ("Xã Đông Hòa", "Đồng"),
    ("Phường Long Xuyên", "xuyen long hai"),  # every word must match
    ("Phường Long Xuyên", "uyen"),  # prefixes of words, not inside them
    ("Xã Đông Hòa", "dông"),  # d typed with a mark elsewhere is not đ
]


def _units(db: Database, rt: Runtime, names: list[str]) -> dict[str, int]:
    ids = {}
    with db.write() as session:
        for n, name in enumerate(dict.fromkeys(names)):
            unit = create_unit(
                session, code="SKHCN" if name.startswith("Sở") else f"U{n}", name=name, kind=UnitKind.COMMUNE_PC.value, valid_from=date(2025, 7, 1), rt=rt, actor=SYSTEM,
            )
            ids[name] = unit.id
    return ids


def _found(db: Database, query: str) -> set[int]:
    with db.read() as session:
        return set(session.scalars(select(UnitVersion.unit_id).where(matches(query))))


def test_the_fold_table_on_both_backends(db: Database, rt: Runtime) -> None:
    ids = _units(db, rt, [n for n, _ in MUST_MATCH + MUST_NOT_MATCH])
    assert len(MUST_MATCH) >= 20
    for name, query in MUST_MATCH:
        assert ids[name] in _found(db, query), (name, query)
    for name, query in MUST_NOT_MATCH:
        assert ids[name] not in _found(db, query), (name, query)


def test_fold() -> None:
    assert fold("Phường Long Xuyên") == "phuong long xuyen"
    assert fold("ĐÔNG  Hoà-2") == "dong hoa 2"
    assert fold(unicodedata.normalize(NFD, "Thạnh")) == "thanh"


def test_a_rename_and_a_same_day_correction_keep_the_words_in_step(db: Database, rt: Runtime) -> None:
    with db.write() as session:
        unit = create_unit(session, code="30307", name="Phường Mỹ Hòa", kind="commune_pc", valid_from=date(2024, 1, 1), rt=rt, actor=SYSTEM)
        unit_id = unit.id
    with db.write() as session:
        change_unit(session, rt, SYSTEM, unit_id, on=date(2025, 7, 1), name="Phường Long Xuyên")
    with db.read() as session:
        versions = session.scalars(select(UnitVersion).where(UnitVersion.unit_id == unit_id).order_by(UnitVersion.valid_from)).all()
        assert [v.search_folded for v in versions] == ["phuong my hoa 30307", "phuong long xuyen 30307"]
        new_id = versions[1].id
    with db.write() as session:
        change_unit(session, rt, SYSTEM, unit_id, on=date(2025, 7, 1), name="Phường Long Xuyên Mới")
    with db.read() as session:
        assert session.get(UnitVersion, new_id).search_folded == "phuong long xuyen moi 30307"  # type: ignore[union-attr]
        words = set(session.scalars(select(UnitSearchWord.folded).where(UnitSearchWord.unit_version_id == new_id)))
        assert words == {"phuong", "long", "xuyen", "moi", "30307"}
    assert len(_found(db, "my hoa")) == 1 and len(_found(db, "xuyen moi")) == 1


def test_reindex_writes_the_words_of_versions_loaded_by_core(db: Database, rt: Runtime) -> None:
    _units(db, rt, ["Xã Đông Hòa"])
    with db.write() as session:
        session.execute(UnitSearchWord.__table__.delete())
        assert reindex(session) == 1
    assert len(_found(db, "dong hoa")) == 1


@pytest.mark.parametrize("query", ["", "   ", "%", "_", "'; DROP TABLE units; --"])
def test_queries_without_words_or_with_sql_are_harmless(db: Database, rt: Runtime, query: str) -> None:
    _units(db, rt, ["Xã Đông Hòa"])
    found = _found(db, query)
    assert found in (set(), set(_found(db, "")))
