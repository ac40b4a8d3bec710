"""In a real browser, with the CSP enforced: the lead signs in and the dashboard draws its charts with
data; a stage's bar opens the units list whose count is the figure; "long xuyen" finds "Long Xuyên";
that list's CSV and XLSX exports hold exactly its rows; the province pages fit 375 px and pass axe-core."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from tests.browser.conftest import Server, run_axe, sign_in

CHARTS = 6  # by stage, by ladder level, due in 30 days, announced per month, by kind, by authority

# Whether a canvas holds any drawn (non-transparent) pixel: a chart with data, not an empty box.
PAINTED = "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 === 3 && v > 0)"


def _listed(page: Any) -> list[tuple[str, str]]:
    """The (code, name) rows of the units list on screen."""
    return [
        (row.locator("td").nth(0).inner_text().strip(), row.locator("td").nth(1).inner_text().strip())
        for row in page.locator("#units tbody tr").all()
    ]


def _count(page: Any) -> int:
    """The list's own count ("12 đơn vị, tính đến ...")."""
    match = re.match(r"([\d.]+) đơn vị", page.locator("#units-count").inner_text())
    assert match, page.locator("#units-count").inner_text()
    return int(match.group(1).replace(".", ""))


def test_the_lead_reads_the_charts_follows_a_stage_searches_and_exports(page: Any, server: Server, tmp_path: Path) -> None:
    sign_in(page, server, "tdc.lan")
    page.goto(server.url + "/dashboard")
    page.wait_for_selector("[data-qf-drawn]")
    assert page.locator("figure.qf-chart[data-qf-drawn]").count() == CHARTS
    assert all(page.locator("figure.qf-chart canvas").evaluate_all(f"cs => cs.map({PAINTED})"))

    # The stage with the most units: its bar, clicked where Chart.js drew it, opens the list it counts.
    spec = json.loads(page.locator("[data-qf-chart]").first.get_attribute("data-qf-chart"))
    series = spec["series"][0]
    i = max(range(len(series["data"])), key=lambda n: series["data"][n])
    figure, link = series["data"][i], series["links"][i]
    assert figure > 0 and page.locator(f'#h-stage ~ .qf-chart-pair table a[href="{link}"]').inner_text() == str(figure)
    canvas = page.locator("figure.qf-chart canvas").first
    x, y = canvas.evaluate(f"c => {{ const bar = Chart.getChart(c).getDatasetMeta(0).data[{i}]; return [bar.base + (bar.x - bar.base) / 2, bar.y]; }}")
    with page.expect_navigation():
        canvas.click(position={"x": x, "y": y})
    assert page.url == server.url + link
    assert _count(page) == figure and len(_listed(page)) == min(figure, 50)

    page.goto(server.url + "/units")
    page.get_by_label("Tìm theo tên hoặc mã").fill("long xuyen")
    page.get_by_role("button", name="Lọc").click()
    page.wait_for_load_state()
    listed = _listed(page)
    assert {("30307", "UBND phường Long Xuyên"), ("THPT-LX", "Trường THPT Long Xuyên")} <= set(listed)  # qmsflow/demo.py
    assert all("Long Xuyên" in name for _, name in listed) and _count(page) == len(listed)

    with page.expect_download() as got:
        page.locator("#export-csv").click()
    csv_path = tmp_path / "units.csv"
    got.value.save_as(csv_path)
    with csv_path.open(encoding="utf-8-sig", newline="") as f:
        csv_rows = list(csv.reader(f))
    assert sorted((r[0], r[1]) for r in csv_rows[1:]) == sorted(listed)

    with page.expect_download() as got:
        page.locator("#export-xlsx").click()
    xlsx_path = tmp_path / "units.xlsx"
    got.value.save_as(xlsx_path)
    book = load_workbook(xlsx_path, read_only=True)
    sheet = list(book.active.iter_rows(values_only=True))
    book.close()
    assert list(sheet[0]) == csv_rows[0]  # the same header
    assert sorted((str(r[0]), str(r[1])) for r in sheet[1:]) == sorted(listed)


def test_the_province_pages_fit_a_phone_and_pass_axe(axe_page: Any, server: Server) -> None:
    axe_page.set_viewport_size({"width": 375, "height": 800})
    sign_in(axe_page, server, "tdc.lan")
    axe_page.goto(server.url + "/units?q=THPT-LX")
    unit_page = axe_page.locator("#units tbody a").first.get_attribute("href")
    assert unit_page and unit_page.startswith("/units/")
    problems: dict[str, Any] = {}
    for path in ["/dashboard", "/units?q=long+xuyen", unit_page, "/escalations"]:
        response = axe_page.goto(server.url + path)
        assert response is not None and response.status == 200, path
        if path == "/dashboard":
            axe_page.wait_for_selector("[data-qf-drawn]")  # measured with the charts drawn, not before
        overflow = axe_page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        violations = run_axe(axe_page)
        if overflow > 0 or violations:
            problems[path] = {"overflow_px": overflow, "axe": violations}
    assert not problems, problems


def test_without_javascript_the_tables_are_the_dashboard(browser: Any, server: Server) -> None:
    context = browser.new_context(java_script_enabled=False, locale="vi-VN")
    page = context.new_page()
    sign_in(page, server, "tdc.lan")
    page.goto(server.url + "/dashboard")
    assert page.locator("figure.qf-chart").count() == CHARTS and not page.locator("figure.qf-chart").first.is_visible()
    assert page.locator("#h-stage ~ .qf-chart-pair table a").first.is_visible()  # the figures, each a link
    page.emulate_media(media="print")
    assert page.locator("#h-stage ~ .qf-chart-pair table").is_visible() and not page.locator("nav").first.is_visible()
    context.close()
