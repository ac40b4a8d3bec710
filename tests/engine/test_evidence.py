"""Evidence files: staged by their owner, attached in scope, typed from their bytes, stored once, audited."""

from __future__ import annotations

import io
import struct
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
from pypdf import PdfWriter
from sqlalchemy import func, select, update

from qmsflow.engine import Conflict, Database, FixedClock, NotFound, Runtime, ValidationFailed, advance, open_case
from qmsflow.engine.evidence import (
    EVIDENCE_KEY,
    EvidenceStore,
    claim,
    open_attachment,
    purge_expired,
    purge_orphans,
    stage,
    verify_files,
)
from qmsflow.engine.history import verify_all
from qmsflow.engine.models import Case, EvidenceUpload, HistoryEntry
from tests.conftest import HISTORY_KEY, Province

PLAN = {"plan_number": "1/KH", "plan_approved_on": "2026-01-05"}


def pdf_bytes(pages: int = 1) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def png_bytes() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")


def jpeg_bytes() -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 1, 1, 1) + b"\x01\x11\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + app0 + sof0 + sos + b"\x00" + b"\xff\xd9"


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(directory=tmp_path / "evidence", max_bytes=64 * 1024, staging=timedelta(hours=24))


@pytest.fixture
def case_id(db: Database, rt: Runtime, province: Province) -> int:
    """A qms_lifecycle case of SNV (a department under the province), opened by the lead."""
    with db.write() as session:
        return open_case(session, rt, province.actors["lead"], province.units["SNV"], "qms_lifecycle").id


def _stage(db: Database, store: EvidenceStore, province: Province, clock: FixedClock, who: str, content: bytes,
           name: str = "ke-hoach.pdf") -> int:
    with db.write() as session:
        return stage(session, store, province.actors[who], name, io.BytesIO(content), clock.now()).id


def _stored_files(store: EvidenceStore) -> list[Path]:
    return [p for p in store.directory.rglob("*") if p.is_file()] if store.directory.exists() else []


def _upload(db: Database, upload_id: int) -> EvidenceUpload:
    with db.read() as session:
        upload = session.get(EvidenceUpload, upload_id)
        assert upload is not None
        session.expunge(upload)  # keep its loaded values past the read session's rollback
        return upload


def test_the_owner_attaches_an_upload_when_advancing_and_the_history_chain_covers_it(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, store: EvidenceStore, case_id: int
) -> None:
    content = pdf_bytes()
    upload_id = _stage(db, store, province, clock, "snv", content)
    with db.write() as session:
        done = advance(session, rt, province.actors["snv"], case_id, "approve_plan", PLAN, evidence=[upload_id])
        assert EVIDENCE_KEY not in done.recorded
    with db.read() as session:
        case = session.get(Case, case_id)
        assert case is not None and EVIDENCE_KEY not in case.data  # recorded in history only
        row = session.scalar(select(HistoryEntry).where(HistoryEntry.case_id == case_id, HistoryEntry.event == "approve_plan"))
        assert row is not None
        upload = session.get(EvidenceUpload, upload_id)
        assert upload is not None and upload.case_id == case_id
        assert row.data[EVIDENCE_KEY] == [
            {"attachment_id": upload_id, "sha256": upload.sha256, "name": "ke-hoach.pdf", "type": "application/pdf", "size": len(content)}
        ]
        assert verify_all(session, HISTORY_KEY)[2] == []
        assert verify_files(session, store) == (1, [])
    # the file's hash is inside the HMAC'd row: swapping it for another file's hash is an edit
    with db.write() as session:
        data = {**row.data, EVIDENCE_KEY: [{**row.data[EVIDENCE_KEY][0], "sha256": "0" * 64}]}
        session.execute(update(HistoryEntry).where(HistoryEntry.id == row.id).values(data=data))
    with db.read() as session:
        assert any("edited" in str(f) for f in verify_all(session, HISTORY_KEY)[2])


def test_uploads_are_attached_when_a_case_is_opened(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, store: EvidenceStore
) -> None:
    upload_id = _stage(db, store, province, clock, "lead", png_bytes(), name="C:\\scans\\quyet-dinh.png")
    with db.write() as session:
        case = open_case(session, rt, province.actors["lead"], province.units["SNV"], "qms_lifecycle", evidence=[upload_id])
        cid = case.id
    with db.read() as session:
        opened = session.scalar(select(HistoryEntry).where(HistoryEntry.case_id == cid, HistoryEntry.seq == 1))
        assert opened is not None
        assert [(e["attachment_id"], e["name"], e["type"]) for e in opened.data[EVIDENCE_KEY]] == [(upload_id, "quyet-dinh.png", "image/png")]
        assert verify_all(session, HISTORY_KEY)[2] == []


def test_another_users_upload_cannot_be_attached(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, store: EvidenceStore, case_id: int
) -> None:
    upload_id = _stage(db, store, province, clock, "snv", pdf_bytes())
    with pytest.raises(NotFound), db.write() as session:
        claim(session, province.actors["lead"], session.get(Case, case_id), [upload_id], clock.now())  # type: ignore[arg-type]
    with pytest.raises(NotFound), db.write() as session:  # another unit: SNV already holds its open lifecycle
        open_case(session, rt, province.actors["lead"], province.units["SGDDT"], "qms_lifecycle", evidence=[upload_id])
    assert _upload(db, upload_id).case_id is None
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 1  # the refused open left no case


def test_an_upload_cannot_be_attached_to_a_case_outside_its_owners_scope(
    db: Database, clock: FixedClock, province: Province, store: EvidenceStore, case_id: int
) -> None:
    upload_id = _stage(db, store, province, clock, "tnh", pdf_bytes())  # a school's officer; the case is SNV's
    with pytest.raises(NotFound), db.write() as session:
        claim(session, province.actors["tnh"], session.get(Case, case_id), [upload_id], clock.now())  # type: ignore[arg-type]
    assert _upload(db, upload_id).case_id is None


def test_an_expired_upload_is_refused_and_the_case_does_not_move(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, store: EvidenceStore, case_id: int
) -> None:
    upload_id = _stage(db, store, province, clock, "snv", pdf_bytes())
    clock.advance(store.staging)
    with pytest.raises(Conflict, match="expired"), db.write() as session:
        advance(session, rt, province.actors["snv"], case_id, "approve_plan", PLAN, evidence=[upload_id])
    with db.read() as session:
        case = session.get(Case, case_id)
        assert case is not None and case.version == 1 and case.history_length == 1
    assert _upload(db, upload_id).case_id is None


def test_an_upload_is_attached_once(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, store: EvidenceStore, case_id: int
) -> None:
    upload_id = _stage(db, store, province, clock, "snv", pdf_bytes())
    with db.write() as session:
        advance(session, rt, province.actors["snv"], case_id, "approve_plan", PLAN, evidence=[upload_id])
    data = {"committee_decision_number": "2/QĐ", "committee_decided_on": "2026-01-05"}
    with pytest.raises(Conflict, match="already attached"), db.write() as session:
        advance(session, rt, province.actors["snv"], case_id, "establish_committee", data, evidence=[upload_id])
    with pytest.raises(ValidationFailed), db.write() as session:
        advance(session, rt, province.actors["snv"], case_id, "establish_committee", data, evidence=[upload_id, upload_id])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"plain text, named .pdf", "only PDF, JPEG and PNG"),
        (b"%PDF-1.7\n1 0 obj garbage that pypdf cannot read\n%%EOF\n", "not a readable PDF"),
        (pdf_bytes()[:-200], "not a readable PDF"),  # truncated: no cross-reference table, no trailer
        (png_bytes()[:-12], "no IEND"),  # truncated scan
        (jpeg_bytes()[:-2], "no end marker"),
        (b"\xff\xd8\xff\xd9", "no frame header"),
        (b"", "empty"),
        (b"%PDF-" + b"0" * (64 * 1024), "larger than"),
    ],
    ids=["text", "garbage-pdf", "truncated-pdf", "truncated-png", "truncated-jpeg", "jpeg-without-frame", "empty", "oversize"],
)
def test_a_refused_file_leaves_no_file_and_no_row(
    db: Database, clock: FixedClock, province: Province, store: EvidenceStore, content: bytes, message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message), db.write() as session:
        stage(session, store, province.actors["snv"], "x.pdf", io.BytesIO(content), clock.now())
    assert _stored_files(store) == []
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(EvidenceUpload)) == 0


def test_jpeg_and_multi_page_pdf_are_accepted(db: Database, clock: FixedClock, province: Province, store: EvidenceStore) -> None:
    assert _upload(db, _stage(db, store, province, clock, "snv", jpeg_bytes(), "scan.jpg")).content_type == "image/jpeg"
    # the type comes from the bytes, not the name
    assert _upload(db, _stage(db, store, province, clock, "snv", pdf_bytes(3), "scan.jpg")).content_type == "application/pdf"


def test_the_same_bytes_uploaded_twice_are_stored_once(
    db: Database, clock: FixedClock, province: Province, store: EvidenceStore
) -> None:
    content = pdf_bytes()
    first = _upload(db, _stage(db, store, province, clock, "snv", content))
    second = _upload(db, _stage(db, store, province, clock, "tnh", content))
    assert first.id != second.id and first.sha256 == second.sha256
    assert _stored_files(store) == [store.path_of(first.sha256)]
    assert store.path_of(first.sha256).read_bytes() == content


def test_a_download_goes_by_attachment_id_and_scope(
    db: Database, rt: Runtime, clock: FixedClock, province: Province, store: EvidenceStore, case_id: int
) -> None:
    content = pdf_bytes()
    upload_id = _stage(db, store, province, clock, "snv", content)
    staged_only = _stage(db, store, province, clock, "snv", png_bytes())
    with db.write() as session:
        advance(session, rt, province.actors["snv"], case_id, "approve_plan", PLAN, evidence=[upload_id])
    with db.read() as session:
        for who in ("snv", "lead"):
            upload, file = open_attachment(session, store, province.actors[who], upload_id, clock.now())
            with file:
                assert file.read() == content and upload.name == "ke-hoach.pdf"
        for who, attachment in (("tnh", upload_id), ("gddt", upload_id), ("snv", staged_only), ("snv", 999)):
            with pytest.raises(NotFound):
                open_attachment(session, store, province.actors[who], attachment, clock.now())


@pytest.fixture
def attached(db: Database, rt: Runtime, clock: FixedClock, province: Province, store: EvidenceStore, case_id: int) -> EvidenceUpload:
    upload_id = _stage(db, store, province, clock, "snv", pdf_bytes())
    with db.write() as session:
        advance(session, rt, province.actors["snv"], case_id, "approve_plan", PLAN, evidence=[upload_id])
    return _upload(db, upload_id)


def _file_findings(db: Database, store: EvidenceStore) -> list[str]:
    with db.read() as session:
        return [str(f) for f in verify_files(session, store)[1]]


def test_audit_reports_an_altered_file(db: Database, store: EvidenceStore, attached: EvidenceUpload) -> None:
    path = store.path_of(attached.sha256)
    path.write_bytes(path.read_bytes().replace(b"842", b"843"))
    assert any(f"attachment {attached.id}" in p and "altered" in p for p in _file_findings(db, store))


def test_audit_reports_a_missing_file(db: Database, store: EvidenceStore, attached: EvidenceUpload) -> None:
    store.path_of(attached.sha256).unlink()
    assert any(f"attachment {attached.id}" in p and "missing" in p for p in _file_findings(db, store))


def test_audit_reports_an_upload_row_edited_behind_the_history(db: Database, store: EvidenceStore, attached: EvidenceUpload) -> None:
    with db.write() as session:
        session.execute(update(EvidenceUpload).where(EvidenceUpload.id == attached.id).values(name="other.pdf"))
    assert any("differs from the history" in p for p in _file_findings(db, store))


def test_purge_removes_expired_staged_uploads_and_keeps_files_still_in_use(
    db: Database, clock: FixedClock, province: Province, store: EvidenceStore, attached: EvidenceUpload
) -> None:
    shared = _stage(db, store, province, clock, "tnh", store.path_of(attached.sha256).read_bytes())  # same bytes as the attached file
    alone = _upload(db, _stage(db, store, province, clock, "snv", png_bytes()))
    clock.advance(store.staging - timedelta(seconds=1))
    fresh = _stage(db, store, province, clock, "snv", jpeg_bytes())
    clock.advance(timedelta(seconds=1))
    with db.write() as session:
        report = purge_expired(session, store, clock.now())
    assert (report.uploads, report.files) == (2, 1)
    with db.read() as session:
        assert set(session.scalars(select(EvidenceUpload.id))) == {attached.id, fresh}
    assert store.path_of(attached.sha256).exists()  # shared with the attached upload: kept
    assert not store.path_of(alone.sha256).exists()
    assert shared not in {attached.id, fresh}
    assert _file_findings(db, store) == []


def test_purge_removes_a_file_whose_staging_was_rolled_back_once_it_is_old_and_keeps_referenced_ones(
    db: Database, clock: FixedClock, province: Province, store: EvidenceStore, attached: EvidenceUpload
) -> None:
    import os

    content = png_bytes()
    with pytest.raises(RuntimeError), db.write() as session:  # a form refused after its file was staged
        orphan = stage(session, store, province.actors["tnh"], "scan.png", io.BytesIO(content), clock.now())
        raise RuntimeError("the event was refused")
    orphan_path = store.path_of(orphan.sha256)
    assert orphan_path.exists()
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(EvidenceUpload).where(EvidenceUpload.sha256 == orphan.sha256)) == 0

    with db.write() as session:  # younger than the staging time: it may belong to a request still running
        assert purge_orphans(session, store, clock.now()) == 0
    old = (clock.now() - store.staging - timedelta(minutes=1)).timestamp()
    for path in (orphan_path, store.path_of(attached.sha256)):
        os.utime(path, (old, old))
    with db.write() as session:
        orphans = purge_orphans(session, store, clock.now())
    assert orphans == 1 and not orphan_path.exists()
    assert store.path_of(attached.sha256).exists()  # an attached file is never an orphan, however old
    assert _file_findings(db, store) == []


def test_a_file_is_renamed_into_place_only_while_its_hash_is_locked(
    db: Database, clock: FixedClock, province: Province, store: EvidenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the invariant purge_expired relies on (evidence._lock_hash): while stage renames a file, no other
    # transaction can take the same lock, so no purge can unlink the file before its row commits
    import os

    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    from qmsflow.engine import evidence as evidence_module

    other = create_engine(db.engine.url, isolation_level="AUTOCOMMIT", connect_args={"timeout": 0} if db.is_sqlite else {})
    content = pdf_bytes()
    seen: list[bool] = []
    real_replace = os.replace

    def checking_replace(src: str | Path, dst: str | Path) -> None:
        with other.connect() as conn:
            if db.is_sqlite:  # the write lock: another writer cannot begin
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    conn.exec_driver_sql("ROLLBACK")
                    seen.append(False)
                except OperationalError:  # "database is locked"
                    seen.append(True)
            else:
                key = int(Path(dst).name[:15], 16)
                got = conn.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
                seen.append(not got)
        real_replace(src, dst)

    monkeypatch.setattr(evidence_module.os, "replace", checking_replace)
    try:
        _stage(db, store, province, clock, "snv", content)
    finally:
        other.dispose()
    assert seen == [True]
