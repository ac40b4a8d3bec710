"""In a real browser, with the CSP enforced: a unit officer finds the case on My work, fires an event
with a PDF and sees it on the timeline; a second session moves the case on and the first session's
stale form is refused with nothing changed; the case page turns English and back; sign-out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from qmsflow.engine.models import Case, HistoryEntry, Unit
from tests.browser.conftest import Server, sign_in
from tests.conftest import rows_committed
from tests.web.cases_support import pdf_bytes


def _case_of(server: Server, code: str) -> int:
    with server.db.read() as session:
        case_id = session.scalar(
            select(Case.id).join(Unit, Unit.id == Case.unit_id).where(Unit.code == code, Case.workflow == "qms_lifecycle")
        )
    assert case_id is not None
    return case_id


def _form(page: Any, event: str) -> Any:
    section = page.locator(f"#su-kien-{event}")
    section.locator("summary").click()
    return section


def test_an_officer_fires_an_event_with_a_pdf_and_a_stale_form_is_refused(
    page: Any, browser: Any, server: Server, tmp_path: Path
) -> None:
    case_id = _case_of(server, "THCS-MT")
    sign_in(page, server, "thcsmt.iso")
    row = page.locator(f'a[href="/cases/{case_id}"]')
    assert row.count() == 1 and "Trường THCS Mỹ Thới" in row.inner_text()
    assert "Xây dựng" in page.locator("table.qf-work").inner_text()
    row.click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text().startswith("Trường THCS Mỹ Thới")
    assert page.locator(".qf-diagram svg").count() == 1

    minutes = tmp_path / "QĐ thành lập BCĐ.pdf"
    minutes.write_bytes(pdf_bytes("Quyết định"))
    form = _form(page, "establish_committee")
    form.get_by_label("Số quyết định").fill("15/QĐ-THCSMT")
    form.get_by_label("Ngày ký").fill("20/11/2026")
    form.get_by_label("Tệp minh chứng").set_input_files(str(minutes))
    form.get_by_role("button", name="Thành lập Ban chỉ đạo ISO").click()
    page.wait_for_load_state()
    assert "Đã ghi nhận: Thành lập Ban chỉ đạo ISO." in page.locator("main").inner_text()
    newest = page.locator(".qf-timeline__entry").first
    assert "Thành lập Ban chỉ đạo ISO" in newest.inner_text() and "15/QĐ-THCSMT" in newest.inner_text()
    assert newest.get_by_role("link", name="QĐ thành lập BCĐ.pdf").count() == 1
    assert "Xây dựng" in page.locator(".qf-facts").inner_text()

    # The first session opens the form of the next step; a second session moves the case on meanwhile.
    first = _form(page, "issue_documents")
    first.get_by_label("Số quyết định ban hành").fill("16/QĐ-THCSMT")
    first.get_by_label("Ngày ban hành").fill("20/11/2026")
    first.get_by_label("Số quy trình").fill("9")
    other = browser.new_context(locale="vi-VN").new_page()
    sign_in(other, server, "thcsmt.iso")
    other.goto(f"{server.url}/cases/{case_id}")
    second = _form(other, "issue_documents")
    second.get_by_label("Số quyết định ban hành").fill("17/QĐ-THCSMT")
    second.get_by_label("Ngày ban hành").fill("21/11/2026")
    second.get_by_label("Số quy trình").fill("12")
    second.get_by_role("button", name="Ban hành quy trình, tài liệu").click()
    other.wait_for_load_state()
    other.locator("#su-kien-start_applying summary").click()
    other.locator("#su-kien-start_applying").get_by_role("button", name="Đưa HTQLCL vào áp dụng").click()
    other.wait_for_load_state()
    assert "Áp dụng" in other.locator(".qf-facts").inner_text()
    other.context.close()

    before = rows_committed(server.db)
    first.get_by_role("button", name="Ban hành quy trình, tài liệu").click()
    page.wait_for_load_state()
    refusal = page.get_by_role("alert").first.inner_text()
    assert "Chưa lưu: hồ sơ đã thay đổi từ khi bạn mở trang" in refusal and "“Xây dựng” sang “Áp dụng”" in refusal
    assert rows_committed(server.db) == before
    with server.db.read() as session:
        assert session.scalar(select(func.count(HistoryEntry.id)).where(
            HistoryEntry.case_id == case_id, HistoryEntry.event == "issue_documents")) == 1

    page.goto(f"{server.url}/cases/{case_id}")  # the refusal answered a POST: the switch comes back to a page
    page.get_by_role("button", name="English").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en" and "Case history" in page.locator("main").inner_text()
    page.get_by_role("button", name="Tiếng Việt").click()
    page.wait_for_load_state()
    assert "Lịch sử hồ sơ" in page.locator("main").inner_text()
    page.get_by_role("button", name="Đăng xuất").click()
    page.wait_for_load_state()
    assert page.url.endswith("/sign-in")
    page.goto(f"{server.url}/cases/{case_id}")
    assert "/sign-in" in page.url
