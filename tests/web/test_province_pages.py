"""The dashboard and the units list: scope, the folded search, bad filters, and exports that are the list."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Callable
from datetime import date, datetime

import pytest
from flask.testing import FlaskClient
from openpyxl import load_workbook

from qmsflow.engine import SYSTEM, Database, Runtime
from qmsflow.engine.province import STAGES
from qmsflow.engine.units import create_unit
from qmsflow.web.units import safe_cell
from tests.conftest import Province
from tests.web.conftest import post

HOSTILE = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "Trường THCS Long Xuyên"]


@pytest.fixture
def hostile(db: Database, rt: Runtime, province: Province) -> None:
    with db.write() as session:
        for n, name in enumerate(HOSTILE):
            create_unit(
                session, code=f"H{n}", name=name, kind="lower_secondary_school", valid_from=date(2025, 7, 1),
                parent=session.merge(province.units["30301"]), rt=rt, actor=SYSTEM,
            )


def test_safe_cell() -> None:
    assert [safe_cell(v) for v in ("=1", "+1", "-1", "@a", "\tx", "ok", 3)] == ["'=1", "'+1", "'-1", "'@a", "'\tx", "ok", 3]


def test_search_folds_and_the_exports_hold_exactly_the_list(signed_in: Callable[[str], FlaskClient], hostile: None) -> None:
    lead = signed_in("lead")
    page = lead.get("/units?q=long+xuyen").get_data(as_text=True)
    assert "Trường THCS Long Xuyên" in page and "1 đơn vị" in page
    listed = lead.get("/units?kind=lower_secondary_school").get_data(as_text=True)
    assert "6 đơn vị" in listed  # THCS-MT and the five above
    raw = lead.get("/units/export.csv?kind=lower_secondary_school").get_data()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    names = sorted(r[1] for r in rows[1:])
    assert names == sorted(["Trường THCS Mỹ Thới", *("'" + n if n[0] in "=+-@" else n for n in HOSTILE)])
    book = load_workbook(io.BytesIO(lead.get("/units/export.xlsx?kind=lower_secondary_school").get_data()), read_only=True)
    sheet_rows = list(book.active.iter_rows(values_only=True))  # type: ignore[union-attr]
    assert sorted(r[1] for r in sheet_rows[1:]) == names
    assert all(isinstance(r[9], type(sheet_rows[1][9])) for r in sheet_rows[1:]) and hasattr(sheet_rows[1][9], "year")


def test_a_unit_officer_sees_its_own_unit_and_a_supervisor_its_subtree(signed_in: Callable[[str], FlaskClient], hostile: None) -> None:
    assert "1 đơn vị" in signed_in("tnh").get("/units").get_data(as_text=True)
    assert "Long Xuyên" not in signed_in("gddt").get("/units?q=long").get_data(as_text=True)


def test_a_bad_filter_is_named_with_a_400(signed_in: Callable[[str], FlaskClient]) -> None:
    response = signed_in("lead").get("/units?stage=nowhere&as_of=31-12-2025")
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "stage" in text and "as_of" in text and "Traceback" not in text


def test_the_dashboard_links_each_figure_to_its_list(signed_in: Callable[[str], FlaskClient], hostile: None) -> None:
    lead = signed_in("lead")
    page = lead.get("/dashboard").get_data(as_text=True)
    assert "/units?stage=none" in page and "tính đến" in page
    assert lead.get("/dashboard?as_of=2025-06-30").status_code == 200
    assert lead.get("/dashboard?as_of=nonsense").status_code == 400


def test_each_chart_is_drawn_from_its_tables_figures_and_links(signed_in: Callable[[str], FlaskClient], hostile: None) -> None:
    page = signed_in("lead").get("/dashboard").get_data(as_text=True)
    charts = [json.loads(html.unescape(raw)) for raw in re.findall(r"data-qf-chart='([^']*)'", page)]
    assert [c["title"] for c in charts] == [
        "Đơn vị theo giai đoạn", "Cảnh báo đang mở theo cấp", "Đơn vị có hạn trong 30 ngày tới",
        "Đơn vị công bố theo tháng", "Tiến độ theo loại đơn vị", "Tiến độ theo cơ quan quản lý",
    ]
    assert [c["stacked"] for c in charts] == [False] * 4 + [True] * 2
    assert len(charts[3]["labels"]) == 24
    assert charts[1]["labels"][1] == "Đã báo đến Sở KH&CN trở lên"  # plain text, not "&amp;" (escaped twice)
    assert {s["key"] for s in charts[4]["series"]} <= set(STAGES)  # a stage is one colour in every chart
    tables = re.findall(r'<a href="(/units[^"]*)">([\d.]+)</a>', page)
    linked = {html.unescape(href): int(n.replace(".", "")) for href, n in tables}
    for chart in charts:  # every bar opens the link its table has, and counts what that link's number says
        for series in chart["series"]:
            for link, count in zip(series["links"], series["data"], strict=True):
                assert (link is None and count == 0) or linked[link] == count, (chart["title"], link)
    stage = charts[0]["series"][0]
    assert sum(stage["data"]) > 0 and all(link.startswith("/units?stage=") for link in stage["links"])
    assert "<svg" not in page and "<script>" not in page  # no server-drawn SVG left; no inline script (the CSP)


def test_the_charts_speak_the_readers_language(signed_in: Callable[[str], FlaskClient]) -> None:
    lead = signed_in("lead")
    post(lead, "/language", {"lang": "en", "next": "/dashboard"}, page="/dashboard")
    page = lead.get("/dashboard").get_data(as_text=True)
    charts = [json.loads(html.unescape(raw)) for raw in re.findall(r"data-qf-chart='([^']*)'", page)]
    assert charts[0]["title"] == "Units by stage" and "Chart: Units by stage" in page
    assert "Planned" in charts[0]["labels"] and "Trong kế hoạch" not in page


def test_the_xlsx_export_streams_a_header_widths_dates_and_neutralised_formulas(
    signed_in: Callable[[str], FlaskClient], hostile: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the workbook was built in a BytesIO and sent whole; it is now spooled to a file and sent in chunks
    from qmsflow.web import units

    monkeypatch.setattr(units, "XLSX_CHUNK", 1024)
    response = signed_in("lead").get("/units/export.xlsx?kind=lower_secondary_school&as_of=2026-05-31", buffered=False)
    assert response.status_code == 200 and response.is_streamed
    blocks = list(response.iter_encoded())
    response.close()
    raw = b"".join(blocks)
    assert len(blocks) > 1 and all(len(b) <= 1024 for b in blocks) and int(response.headers["Content-Length"]) == len(raw)
    book = load_workbook(io.BytesIO(raw))
    sheet = book.active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:2] == ("Mã", "Tên đơn vị") and len(rows) == 7
    assert sheet.column_dimensions["B"].width == units.XLSX_WIDTHS[1]
    assert {r[9] for r in rows[1:]} == {datetime(2026, 5, 31)}  # the as-of day, a date cell
    names = {r[1] for r in rows[1:]}
    assert {"'=HYPERLINK(\"http://x\")", "'+1+1", "'-2+3", "'@SUM(A1)", "Trường THCS Long Xuyên"} <= names
    assert not any(isinstance(r[1], str) and r[1].startswith(("=", "+", "-", "@")) for r in rows[1:])
