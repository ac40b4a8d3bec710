"""What the case pages' tests share: a PDF that parses, and a small world of cases, files and notices."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from flask import Flask
from sqlalchemy import select

from qmsflow.bootstrap import evidence_store
from qmsflow.engine import Database, Runtime, advance, open_case
from qmsflow.engine.evidence import EvidenceStore, stage
from qmsflow.engine.models import InboxItem, Notification, User
from tests.conftest import Province


def pdf_bytes(title: str = "Biên bản") -> bytes:
    """A small PDF that pypdf parses: one blank page."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_metadata({"/Title": title})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@dataclass(frozen=True)
class World:
    """Ids the route matrix and the browser checks put in their paths."""

    case: int  # THPT-TNH's lifecycle, in building, ready to apply: tnh's unit, supervised by gddt
    other_case: int  # THCS-MT's lifecycle: outside tnh's and gddt's scope
    attachment: int  # a file on ``case``
    other_attachment: int  # a file on ``other_case``
    item: int  # an inbox item of tnh's about ``case``
    unit: int  # ``case``'s unit (THPT-TNH): tnh's, under gddt
    other_unit: int  # ``other_case``'s unit (THCS-MT): outside tnh's and gddt's scope


def make_world(db: Database, rt: Runtime, province: Province, store: EvidenceStore) -> World:
    """Open the cases, attach a file to each through the engine (into the app's ``store``), notify tnh."""
    lead = province.actors["lead"]
    with db.write() as session:
        case = open_case(session, rt, lead, session.merge(province.units["THPT-TNH"]), "qms_lifecycle")
        other = open_case(session, rt, lead, session.merge(province.units["THCS-MT"]), "qms_lifecycle")
        ids = []
        for target, actor in ((case, province.actors["tnh"]), (other, province.actors["thcs"])):
            upload = stage(session, store, actor, "kế hoạch.pdf", io.BytesIO(pdf_bytes()), rt.clock.now())
            advance(session, rt, actor, target.id, "approve_plan", {"plan_number": "1/KH", "plan_approved_on": "2026-01-05"},
                    evidence=[upload.id])
            ids.append(upload.id)
        officer = province.actors["tnh"]
        advance(session, rt, officer, case.id, "establish_committee", {"committee_decision_number": "5/QĐ", "committee_decided_on": "2026-01-05"})
        advance(session, rt, officer, case.id, "issue_documents",
                {"documents_decision_number": "6/QĐ", "documents_issued_on": "2026-01-05", "procedure_count": 12})
        note = Notification(case_id=case.id, kind="reminder", level=0, target="unit", target_unit_id=case.unit_id,
                            subject="Sắp đến hạn hoàn thành xây dựng HTQLCL", body="Còn 10 ngày làm việc.",
                            created_at=rt.clock.now(), status="routed")
        session.add(note)
        session.flush()
        user_id = session.scalar(select(User.id).where(User.username == "tnh"))
        item = InboxItem(notification_id=note.id, user_id=user_id, created_at=rt.clock.now())
        session.add(item)
        session.flush()
        return World(case.id, other.id, ids[0], ids[1], item.id, case.unit_id, other.unit_id)


def app_store(app: Flask) -> EvidenceStore:
    """Where the app under test keeps evidence files."""
    return evidence_store(app.extensions["qmsflow"].settings)


@pytest.fixture
def world(app: Flask, db: Database, rt: Runtime, province: Province) -> World:
    """The cases, files and notice of ``make_world``, in the app's evidence store."""
    return make_world(db, rt, province, app_store(app))
