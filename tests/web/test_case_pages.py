"""The officers' daily pages: My work, the case page and its forms, evidence files, the inbox, opening cases."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from qmsflow.bootstrap import evidence_store
from qmsflow.config import Settings
from qmsflow.engine import Database, FixedClock, Runtime, advance, open_case
from qmsflow.engine.evidence import stage
from qmsflow.engine.models import Case, EvidenceUpload, HistoryEntry
from tests.conftest import Province, rows_committed
from tests.web.cases_support import World, pdf_bytes
from tests.web.conftest import post

CA = {"inspection_decision": "20/QĐ-SKHCN", "minutes_number": "21/BB", "minutes_signed_on": "2025-12-01", "findings": "Thiếu hồ sơ"}


def _lifecycle(db: Database, rt: Runtime, province: Province, unit: str = "THPT-TNH") -> int:
    with db.write() as session:
        return open_case(session, rt, province.actors["lead"], session.merge(province.units[unit]), "qms_lifecycle").id


def _version(html: str, event: str) -> str:
    form = html[html.index(f'id="su-kien-{event}"'):]
    found = re.search(r'name="version" value="(\d+)"', form)
    assert found is not None
    return found.group(1)


def test_my_work_lists_the_units_case_and_the_case_page_fires_an_event_with_a_pdf(
    db: Database, rt: Runtime, province: Province, signed_in: Callable[[str], FlaskClient]
) -> None:
    case_id = _lifecycle(db, rt, province)
    officer = signed_in("tnh")
    home = officer.get("/").get_data(as_text=True)
    assert f'href="/cases/{case_id}"' in home and "Trong kế hoạch" in home
    page = officer.get(f"/cases/{case_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<svg" in html and "Phê duyệt kế hoạch xây dựng HTQLCL" in html
    response = post(officer, f"/cases/{case_id}/events/approve_plan",
        data={"version": _version(html, "approve_plan"), "plan_number": "12/KH", "plan_approved_on": "5/1/2026",
              "comment": "<script>alert(1)</script>", "evidence": (io.BytesIO(pdf_bytes()), "../../kế hoạch.pdf")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    after = officer.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "Xây dựng" in after and "12/KH" in after and "05/01/2026" in after
    assert "<script>alert(1)</script>" not in after and "&lt;script&gt;alert(1)&lt;/script&gt;" in after
    with db.read() as session:
        upload = session.scalars(select(EvidenceUpload)).one()
        assert upload.name == "kế hoạch.pdf" and upload.case_id == case_id
        upload_id = upload.id
    download = officer.get(f"/evidence/{upload_id}")
    assert download.status_code == 200 and download.mimetype == "application/pdf"
    assert download.headers["Content-Disposition"] == "attachment; filename=\"k_ ho_ch.pdf\"; filename*=UTF-8''k%E1%BA%BF%20ho%E1%BA%A1ch.pdf"
    assert download.data.startswith(b"%PDF-")


def test_a_refused_form_shows_its_errors_with_the_values_kept_and_changes_nothing(
    db: Database, rt: Runtime, province: Province, signed_in: Callable[[str], FlaskClient]
) -> None:
    case_id = _lifecycle(db, rt, province)
    officer = signed_in("tnh")
    before = rows_committed(db)
    response = post(officer, f"/cases/{case_id}/events/approve_plan",
        data={"version": "1", "plan_number": "12/KH", "plan_approved_on": "31/02/2026",
              "evidence": (io.BytesIO(b"just text, not a pdf"), "giả.pdf")},
        content_type="multipart/form-data",
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "“Ngày phê duyệt” không phải là một ngày có thật." in html and 'value="31/02/2026"' in html and 'value="12/KH"' in html
    assert rows_committed(db) == before
    text_file = post(officer, f"/cases/{case_id}/events/approve_plan",
        data={"version": "1", "plan_number": "12/KH", "plan_approved_on": "05/01/2026",
              "evidence": (io.BytesIO(b"just text, not a pdf"), "giả.pdf")},
        content_type="multipart/form-data",
    )
    assert text_file.status_code == 400 and "Chỉ nhận tệp PDF, JPEG hoặc PNG" in text_file.get_data(as_text=True)
    assert rows_committed(db) == before


def test_a_stale_form_is_refused_saying_what_changed_and_a_reminder_does_not_make_it_stale(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, signed_in: Callable[[str], FlaskClient]
) -> None:
    case_id = _lifecycle(db, rt, province)
    officer = signed_in("tnh")
    html = officer.get(f"/cases/{case_id}").get_data(as_text=True)
    loaded = _version(html, "approve_plan")
    with db.write() as session:  # another officer of the unit, in another tab
        advance(session, rt, province.actors["tnh"], case_id, "approve_plan", {"plan_number": "9/KH", "plan_approved_on": "2026-01-05"})
    before = rows_committed(db)
    response = post(officer, f"/cases/{case_id}/events/approve_plan",
                            data={"version": loaded, "plan_number": "12/KH", "plan_approved_on": "05/01/2026"})
    page = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "Chưa lưu: hồ sơ đã thay đổi từ khi bạn mở trang" in page and "“Trong kế hoạch” sang “Xây dựng”" in page
    assert rows_committed(db) == before


def test_out_of_scope_case_file_and_event_are_404_and_change_nothing(
    db: Database, rt: Runtime, province: Province, signed_in: Callable[[str], FlaskClient]
) -> None:
    case_id = _lifecycle(db, rt, province)
    owner = signed_in("tnh")
    post(owner, f"/cases/{case_id}/events/approve_plan", content_type="multipart/form-data",
               data={"version": "1", "plan_number": "1/KH", "plan_approved_on": "05/01/2026", "evidence": (io.BytesIO(pdf_bytes()), "a.pdf")})
    with db.read() as session:
        attachment = session.scalars(select(EvidenceUpload.id)).one()
    stranger = signed_in("thcs")
    before = rows_committed(db)
    assert stranger.get(f"/cases/{case_id}").status_code == 404
    assert stranger.get(f"/cases/{case_id}/print").status_code == 404
    assert stranger.get(f"/evidence/{attachment}").status_code == 404
    assert post(stranger, f"/cases/{case_id}/events/establish_committee",
                         data={"version": "2", "committee_decision_number": "1", "committee_decided_on": "05/01/2026"}).status_code == 404
    assert post(stranger, f"/cases/{case_id}/events/withdraw/check", data={"version": "2", "reason": "x"}).status_code == 404
    assert stranger.get(f"/cases/{case_id}/events/start_applying/confirm").status_code == 404
    assert post(owner, f"/cases/{case_id}/events/supersede", data={"version": "2"}).status_code == 404  # reserved
    assert rows_committed(db) == before


def test_a_field_less_event_is_a_button_on_my_work_that_asks_first(
    db: Database, rt: Runtime, province: Province, signed_in: Callable[[str], FlaskClient]
) -> None:
    case_id = _lifecycle(db, rt, province)
    with db.write() as session:
        actor = province.actors["tnh"]
        advance(session, rt, actor, case_id, "approve_plan", {"plan_number": "1/KH", "plan_approved_on": "2026-01-05"})
        advance(session, rt, actor, case_id, "establish_committee", {"committee_decision_number": "5/QĐ", "committee_decided_on": "2026-01-05"})
    officer = signed_in("tnh")
    home = officer.get("/").get_data(as_text=True)
    assert "Cần có quyết định thành lập Ban chỉ đạo ISO và quy trình đã ban hành" in home and "disabled" in home
    with db.write() as session:
        advance(session, rt, province.actors["tnh"], case_id, "issue_documents",
                {"documents_decision_number": "6/QĐ", "documents_issued_on": "2026-01-05", "procedure_count": 12})
    home = officer.get("/").get_data(as_text=True)
    assert f"/cases/{case_id}/events/start_applying/confirm" in home
    confirm = officer.get(f"/cases/{case_id}/events/start_applying/confirm").get_data(as_text=True)
    assert "Bạn có chắc muốn ghi nhận “Đưa HTQLCL vào áp dụng”" in confirm
    assert post(officer, f"/cases/{case_id}/events/start_applying", data={"version": "4"}).status_code == 302
    with db.read() as session:
        assert session.get(Case, case_id).state == "applying"  # type: ignore[union-attr]


def test_withdraw_checks_the_answers_before_it_is_applied(
    db: Database, rt: Runtime, province: Province, signed_in: Callable[[str], FlaskClient]
) -> None:
    case_id = _lifecycle(db, rt, province)
    lead = signed_in("lead")
    check = post(lead, f"/cases/{case_id}/events/withdraw/check", data={"version": "1", "reason": "Sáp nhập vào trường khác"})
    html = check.get_data(as_text=True)
    assert check.status_code == 200 and "Sáp nhập vào trường khác" in html and "không hoàn tác được" in html
    with db.read() as session:
        assert session.get(Case, case_id).state == "planned"  # type: ignore[union-attr]
    assert post(lead, f"/cases/{case_id}/events/withdraw", data={"version": "1", "reason": "Sáp nhập vào trường khác"}).status_code == 302
    with db.read() as session:
        assert session.get(Case, case_id).state == "withdrawn"  # type: ignore[union-attr]


def test_the_check_step_names_only_the_persons_own_staged_files(
    db: Database, rt: Runtime, province: Province, signed_in: Callable[[str], FlaskClient], web_settings: Settings
) -> None:
    case_id = _lifecycle(db, rt, province)
    with db.write() as session:  # someone else's upload, staged but not attached
        theirs = stage(session, evidence_store(web_settings), province.actors["tnh"], "bien-ban-mat.pdf",
                       io.BytesIO(pdf_bytes()), rt.clock.now()).id
    check = post(signed_in("lead"), f"/cases/{case_id}/events/withdraw/check",
                 data={"version": "1", "reason": "Sáp nhập vào trường khác", "upload": str(theirs)})
    assert check.status_code == 404 and "bien-ban-mat.pdf" not in check.get_data(as_text=True)


def test_the_lead_opens_a_corrective_action_from_the_signed_minutes_and_a_lifecycle_for_a_unit_without_one(
    db: Database, rt: Runtime, province: Province, signed_in: Callable[[str], FlaskClient]
) -> None:
    lead = signed_in("lead")
    assert lead.get("/cases/new/corrective-action").status_code == 200
    missing = post(lead, "/cases/new/corrective-action", data={"unit": "THPT-TNH", **CA, "minutes_signed_on": "01/12/2025"})
    assert missing.status_code == 400 and "Hãy đính kèm biên bản kiểm tra đã ký" in missing.get_data(as_text=True)
    opened = post(lead, "/cases/new/corrective-action", content_type="multipart/form-data",
                       data={"unit": "THPT-TNH", **CA, "minutes_signed_on": "01/12/2025", "evidence": (io.BytesIO(pdf_bytes()), "BB21.pdf")})
    assert opened.status_code == 302
    again = post(lead, "/cases/new/corrective-action", content_type="multipart/form-data",
                      data={"unit": "THPT-TNH", **CA, "minutes_signed_on": "01/12/2025", "evidence": (io.BytesIO(pdf_bytes()), "BB21.pdf")})
    assert again.status_code == 400 and "đã có hồ sơ khắc phục cho biên bản này" in again.get_data(as_text=True)
    listing = lead.get("/cases/new/lifecycle").get_data(as_text=True)
    assert "Trường THPT Thoại Ngọc Hầu" in listing
    assert post(lead, "/cases/new/lifecycle", data={"unit": "THPT-TNH"}).status_code == 302
    assert "Trường THPT Thoại Ngọc Hầu" not in lead.get("/cases/new/lifecycle").get_data(as_text=True)
    twice = post(lead, "/cases/new/lifecycle", data={"unit": "THPT-TNH"})
    assert twice.status_code == 400 and "đã có hồ sơ đang mở" in twice.get_data(as_text=True)
    with db.read() as session:
        opened_rows = session.scalars(select(HistoryEntry).where(HistoryEntry.kind == "opened")).all()
        assert len(opened_rows) == 2 and opened_rows[0].data["_evidence"][0]["name"] == "BB21.pdf"
    assert signed_in("tnh").get("/cases/new/lifecycle").status_code == 403


def test_the_print_view_has_no_forms(db: Database, rt: Runtime, province: Province, signed_in: Callable[[str], FlaskClient]) -> None:
    case_id = _lifecycle(db, rt, province)
    html = signed_in("tnh").get(f"/cases/{case_id}/print").get_data(as_text=True)
    assert "<svg" in html and "Lịch sử hồ sơ" in html and 'name="version"' not in html




def test_an_event_post_without_its_csrf_token_is_refused_and_changes_nothing(
    db: Database, rt: Runtime, province: Province, signed_in: Callable[[str], FlaskClient]
) -> None:
    case_id = _lifecycle(db, rt, province)
    officer = signed_in("tnh")
    before = rows_committed(db)
    response = officer.post(f"/cases/{case_id}/events/approve_plan",
                            data={"version": "1", "plan_number": "12/KH", "plan_approved_on": "05/01/2026"})
    assert response.status_code == 400
    assert rows_committed(db) == before


def test_an_oversized_file_is_refused_and_nothing_is_stored(
    db: Database, rt: Runtime, province: Province, signed_in: Callable[[str], FlaskClient], app: Flask
) -> None:
    case_id = _lifecycle(db, rt, province)
    officer = signed_in("tnh")
    limit = app.extensions["qmsflow"].settings.evidence.max_bytes
    big = pdf_bytes() + b"%" + b"0" * limit  # a PDF header, but over the limit
    before = rows_committed(db)
    response = post(officer, f"/cases/{case_id}/events/approve_plan", content_type="multipart/form-data",
                    data={"version": "1", "plan_number": "12/KH", "plan_approved_on": "05/01/2026", "evidence": (io.BytesIO(big), "lớn.pdf")})
    assert response.status_code == 400 and "Tệp lớn quá 20 MB" in response.get_data(as_text=True)
    assert rows_committed(db) == before


def test_the_case_page_speaks_english_when_chosen(
    db: Database, rt: Runtime, province: Province, signed_in: Callable[[str], FlaskClient]
) -> None:
    case_id = _lifecycle(db, rt, province)
    officer = signed_in("tnh")
    post(officer, "/language", {"lang": "en", "next": f"/cases/{case_id}"})
    html = officer.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "Approve the implementation plan" in html and "Case history" in html and "Planned" in html
    assert "Lịch sử hồ sơ" not in html
    assert "What you can do now" in officer.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "My work" in officer.get("/").get_data(as_text=True)


def test_a_script_in_a_unit_name_shows_as_text_on_my_work_and_the_case_page(
    db: Database, rt: Runtime, province: Province, signed_in: Callable[[str], FlaskClient]
) -> None:
    from sqlalchemy import update

    from qmsflow.engine.models import UnitVersion

    case_id = _lifecycle(db, rt, province)
    with db.write() as session:
        session.execute(update(UnitVersion).where(UnitVersion.code == "THPT-TNH").values(name="<script>alert('x')</script> Trường"))
    officer = signed_in("tnh")
    for path in ("/", f"/cases/{case_id}", f"/cases/{case_id}/print"):
        html = officer.get(path).get_data(as_text=True)
        assert "<script>alert(" not in html and "&lt;script&gt;alert(" in html, path


def test_the_inbox_lists_marks_read_and_the_header_counts_unread(
    db: Database, rt: Runtime, province: Province, signed_in: Callable[[str], FlaskClient], world: World
) -> None:
    officer = signed_in("tnh")
    inbox = officer.get("/inbox").get_data(as_text=True)
    assert "Sắp đến hạn hoàn thành xây dựng HTQLCL" in inbox and "Chưa đọc" in inbox
    assert "1 thông báo chưa đọc" in officer.get("/").get_data(as_text=True)
    assert post(officer, f"/inbox/{world.item}/read").status_code == 302
    assert "Chưa đọc" not in officer.get("/inbox").get_data(as_text=True)
    assert "thông báo chưa đọc" not in officer.get("/").get_data(as_text=True)
    assert post(signed_in("gddt"), f"/inbox/{world.item}/read").status_code == 404  # not theirs
    assert post(officer, "/inbox/read-all").status_code == 302
