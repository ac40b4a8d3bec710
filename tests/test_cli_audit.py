"""The command line's evidence commands (upload, attach on advance, download) and what `audit verify` checks."""

from __future__ import annotations

import io
import json
from pathlib import Path

from pypdf import PdfWriter
from sqlalchemy import select, update

from qmsflow.engine import Database
from qmsflow.engine.models import AdminLogEntry


def test_upload_attach_on_advance_download_and_audit(run, tmp_path: Path) -> None:
    assert run("demo").exit_code == 0
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    buffer = io.BytesIO()
    writer.write(buffer)
    scan = tmp_path / "quyet-dinh.pdf"
    scan.write_bytes(buffer.getvalue())
    (tmp_path / "notes.pdf").write_text("not a pdf")
    assert run("evidence", "upload", str(tmp_path / "notes.pdf"), "--as", "stp.iso").exit_code == 2

    uploaded = run("evidence", "upload", str(scan), "--as", "stp.iso")
    assert uploaded.exit_code == 0, uploaded.output
    upload_id = uploaded.output.strip()
    case = json.loads(run("cases", "list", "--as", "stp.iso", "--json").output)[0]
    ok = run("cases", "advance", str(case["id"]), "establish_committee", "--as", "stp.iso", "--evidence", upload_id,
             "--data", "committee_decision_number=70/QĐ-STP", "--data", "committee_decided_on=2026-06-05")
    assert ok.exit_code == 0, ok.output

    out = tmp_path / "copy.pdf"
    got = run("evidence", "get", upload_id, "--as", "tdc.lan", "-o", str(out))
    assert got.exit_code == 0, got.output
    assert out.read_bytes() == scan.read_bytes()
    assert run("evidence", "get", upload_id, "--as", "tnh.iso", "-o", str(tmp_path / "no.pdf")).exit_code == 4
    assert not (tmp_path / "no.pdf").exists()

    assert run("audit", "verify").exit_code == 0
    for stored in (tmp_path / "evidence").rglob("*"):
        if stored.is_file():
            stored.unlink()
    broken = run("audit", "verify")
    assert broken.exit_code == 1 and f"attachment {upload_id}" in broken.output and "missing" in broken.output


def test_a_user_created_from_the_command_line_is_logged_and_audit_verify_checks_the_log(run, db: Database) -> None:
    assert run("demo").exit_code == 0
    assert run("users", "create", "snv.deputy", "--role", "viewer").exit_code == 0
    ok = run("audit", "verify")
    assert ok.exit_code == 0 and "admin log rows verified" in ok.output
    with db.write() as session:
        session.execute(update(AdminLogEntry).where(AdminLogEntry.action == "user.create").values(after={"role": "admin"}))
    broken = run("audit", "verify")
    assert broken.exit_code == 1 and "admin log row" in broken.output and "edited" in broken.output
    with db.read() as session:
        actors = set(session.scalars(select(AdminLogEntry.actor).where(AdminLogEntry.action == "user.create")))
    assert any(a.startswith("cli:") for a in actors) and "system" in actors  # the operator, and the demo loader
