"""The case pages' fixture ids in the demo, for the browser checks of the route matrix's pages."""

from __future__ import annotations

import io

from sqlalchemy import select

from qmsflow.bootstrap import build_runtime, evidence_store
from qmsflow.engine import advance
from qmsflow.engine.evidence import stage
from qmsflow.engine.models import Case, InboxItem, Notification, Unit, User
from qmsflow.engine.permissions import Actor
from tests.browser.conftest import Server
from tests.web.cases_support import pdf_bytes


def demo_case_ids(server: Server) -> dict[str, int]:
    """``case``, ``other_case``, ``attachment``, ``other_attachment``, ``item`` and the two cases' units in the served demo."""
    assert server.settings is not None
    rt = build_runtime(server.settings, server.clock)
    store = evidence_store(server.settings)
    day = server.clock.now().date().isoformat()
    with server.db.write() as session:
        def lifecycle(code: str) -> Case:
            case = session.scalar(select(Case).join(Unit, Unit.id == Case.unit_id).where(
                Unit.code == code, Case.workflow == "qms_lifecycle", Case.closed_at.is_(None)))
            assert case is not None, code
            return case

        def actor(username: str) -> Actor:
            user = session.scalar(select(User).where(User.username == username))
            assert user is not None, username
            return Actor.of(user)

        mine, officer = lifecycle("THCS-MT"), actor("thcsmt.iso")
        other, other_officer = lifecycle("SNV"), actor("snv.iso")
        upload = stage(session, store, officer, "Quyết định thành lập BCĐ.pdf", io.BytesIO(pdf_bytes()), rt.clock.now())
        advance(session, rt, officer, mine.id, "establish_committee",
                {"committee_decision_number": "15/QĐ-THCSMT", "committee_decided_on": day}, evidence=[upload.id])
        advance(session, rt, officer, mine.id, "issue_documents",
                {"documents_decision_number": "16/QĐ-THCSMT", "documents_issued_on": day, "procedure_count": 9})
        other_upload = stage(session, store, other_officer, "Cải tiến.pdf", io.BytesIO(pdf_bytes()), rt.clock.now())
        advance(session, rt, other_officer, other.id, "record_improvement",
                {"improvement": "Số hoá hồ sơ một cửa", "improved_on": day}, evidence=[other_upload.id])
        item = session.scalar(
            select(InboxItem.id).join(Notification, Notification.id == InboxItem.notification_id)
            .join(User, User.id == InboxItem.user_id).where(User.username == "thcsmt.iso").limit(1)
        )
        return {"case": mine.id, "other_case": other.id, "attachment": upload.id, "other_attachment": other_upload.id,
                "item": item or 0, "unit": mine.unit_id, "other_unit": other.unit_id}
