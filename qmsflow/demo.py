"""A small demo province (the new An Giang after 1 July 2025), built only through engine services.

The demo clock walks from July 2025 to November 2026 and fires real events as real users, so every
history row is chained and ``qmsflow audit verify`` passes on it. A later issue replaces this with the
full An Giang data.

The story is told relative to the day it is loaded: loaded after ``PRESENT`` (the Monday after its last
event), every event and date field moves forward by whole weeks so the story ends in the week before
the load day, weekdays kept. So a freshly loaded demo always has the same deadlines a few days ahead
and the README's examples mean the same on any day. ``catch_up`` then fires what fell due on the way,
as a scheduler would have. Units stay valid from 1 July 2025, the day the reorganisation took effect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .engine import cases
from .engine.clock import LOCAL_TZ, FixedClock
from .engine.db import Database
from .engine.models import Case, Unit
from .engine.notifications import MailSettings, route
from .engine.permissions import SYSTEM, Actor
from .engine.runtime import Runtime
from .engine.units import UnitKind, create_unit, set_contact
from .engine.users import create_user

START = date(2025, 7, 1)
PRESENT = date(2026, 11, 23)  # the Monday after the story's last event (Friday 20 November 2026)


def shift_for(load_day: date) -> timedelta:
    """Whole weeks that move the story so it ends in the week before ``load_day`` (never backwards)."""
    return timedelta(weeks=max(0, (load_day - PRESENT).days // 7))

# code, name, kind, parent code, lead?
UNITS: list[tuple[str, str, UnitKind, str | None, bool]] = [
    ("91", "UBND tỉnh An Giang", UnitKind.PROVINCE_PC, None, False),
    ("SKHCN", "Sở Khoa học và Công nghệ", UnitKind.DEPARTMENT, "91", True),
    ("SGDDT", "Sở Giáo dục và Đào tạo", UnitKind.DEPARTMENT, "91", False),
    ("SNV", "Sở Nội vụ", UnitKind.DEPARTMENT, "91", False),
    ("STP", "Sở Tư pháp", UnitKind.DEPARTMENT, "91", False),
    ("30307", "UBND phường Long Xuyên", UnitKind.COMMUNE_PC, "91", False),
    ("30292", "UBND phường Bình Đức", UnitKind.COMMUNE_PC, "91", False),
    ("30301", "UBND phường Mỹ Thới", UnitKind.COMMUNE_PC, "91", False),
    ("THPT-TNH", "Trường THPT Thoại Ngọc Hầu", UnitKind.HIGH_SCHOOL, "SGDDT", False),
    ("THPT-LX", "Trường THPT Long Xuyên", UnitKind.HIGH_SCHOOL, "SGDDT", False),
    ("THCS-MT", "Trường THCS Mỹ Thới", UnitKind.LOWER_SECONDARY, "30301", False),
    ("THCS-BD", "Trường THCS Bình Đức", UnitKind.LOWER_SECONDARY, "30292", False),
]

# Every demo user signs in with this password, so an official can try the pages at once; `qmsflow demo`
# prints it. A real installation makes its users with `qmsflow users create` and `set-password`.
DEMO_PASSWORD = "qmsflow-demo"

# username, full name, role, unit code
USERS: list[tuple[str, str, str, str | None]] = [
    ("admin", "Quản trị hệ thống", "admin", None),
    ("tdc.lan", "Nguyễn Thị Lan (Chi cục TĐC)", "lead", "SKHCN"),
    ("gddt.minh", "Trần Văn Minh (Sở GD&ĐT)", "supervisor", "SGDDT"),
    ("mythoi.hoa", "Lê Thị Hoa (UBND phường Mỹ Thới)", "supervisor", "30301"),
    ("snv.iso", "Phạm Quốc Bảo (Sở Nội vụ)", "unit_officer", "SNV"),
    ("stp.iso", "Đỗ Thị Ngọc (Sở Tư pháp)", "unit_officer", "STP"),
    ("longxuyen.iso", "Võ Minh Tâm (UBND phường Long Xuyên)", "unit_officer", "30307"),
    ("tnh.iso", "Huỳnh Thị Mai (THPT Thoại Ngọc Hầu)", "unit_officer", "THPT-TNH"),
    ("lx.iso", "Ngô Văn Phúc (THPT Long Xuyên)", "unit_officer", "THPT-LX"),
    ("thcsmt.iso", "Lâm Thị Thu (THCS Mỹ Thới)", "unit_officer", "THCS-MT"),
    ("lanhdao", "Lãnh đạo UBND tỉnh", "viewer", None),
]


@dataclass
class _Demo:
    session: Session
    rt: Runtime
    clock: FixedClock
    shift: timedelta = timedelta(0)
    units: dict[str, Unit] = field(default_factory=dict)
    actors: dict[str, Actor] = field(default_factory=dict)
    case_of: dict[str, Case] = field(default_factory=dict)

    def on(self, day: date, hour: int = 9) -> None:
        self.clock.set(datetime.combine(day + self.shift, time(hour, 0), tzinfo=LOCAL_TZ))

    def dates(self, data: dict[str, object]) -> dict[str, object]:
        """The story's date fields (``*_on``), moved with the story."""
        return {
            k: (date.fromisoformat(v) + self.shift).isoformat() if k.endswith("_on") and isinstance(v, str) else v
            for k, v in data.items()
        }

    def fire(self, code: str, user: str, event: str, **data: object) -> None:
        case = self.case_of[code]
        cases.advance(self.session, self.rt, self.actors[user], case.id, event, self.dates(data), expected_version=case.version)


def has_data(session: Session) -> bool:
    """Return whether the database already holds units (the demo never loads twice)."""
    return bool(session.scalar(select(func.count()).select_from(Unit)))


def build_demo(
    session: Session, rt: Runtime, log: Callable[[str], None] = lambda _m: None, *, load_day: date = PRESENT
) -> dict[str, int]:
    """Create the demo province in ``session`` by driving the engine; return counts of what was made.

    The story moves by ``shift_for(load_day)`` (module docstring); the default tells it as written.
    """
    clock = FixedClock(datetime.combine(START, time(8, 0), tzinfo=LOCAL_TZ))
    demo_rt = replace(rt, clock=clock)
    d = _Demo(session, demo_rt, clock, shift_for(load_day))
    if d.shift:
        log(f"story moved {d.shift.days // 7} weeks forward, to end on {PRESENT + d.shift}")
    for code, name, kind, parent, lead in UNITS:
        d.units[code] = create_unit(
            session, code=code, name=name, kind=kind.value, valid_from=START,
            parent=d.units[parent] if parent else None, is_lead=lead, rt=demo_rt, actor=SYSTEM,
        )
        slug = code.lower().replace("-", "")
        set_contact(session, d.units[code], "head", f"Thủ trưởng {name}", email=f"head@{slug}.angiang.example", rt=demo_rt, actor=SYSTEM)
        set_contact(session, d.units[code], "iso_officer", f"Cán bộ ISO {name}", email=f"iso@{slug}.angiang.example", rt=demo_rt, actor=SYSTEM)
    log(f"{len(d.units)} units")
    for username, full_name, role, unit_code in USERS:
        user = create_user(
            session, username=username, full_name=full_name, role=role, now=clock.now(),
            unit=d.units[unit_code] if unit_code else None, email=f"{username}@angiang.example",
            password=DEMO_PASSWORD, rt=demo_rt, actor=SYSTEM,
        )
        d.actors[username] = Actor.of(user)
    log(f"{len(d.actors)} users")

    d.on(date(2025, 7, 7))
    for code, _name, kind, _parent, _lead in UNITS:
        if kind is not UnitKind.PROVINCE_PC:
            d.case_of[code] = cases.open_case(session, demo_rt, d.actors["tdc.lan"], d.units[code], "qms_lifecycle")

    # Sở Nội vụ: the model unit, through announcement into maintenance, with yearly records.
    d.on(date(2025, 7, 15))
    d.fire("SNV", "snv.iso", "approve_plan", plan_number="45/KH-SNV", plan_approved_on="2025-07-14")
    d.on(date(2025, 8, 4))
    d.fire("SNV", "snv.iso", "establish_committee", committee_decision_number="112/QĐ-SNV", committee_decided_on="2025-08-01")
    d.on(date(2025, 9, 15))
    d.fire("SNV", "snv.iso", "issue_documents", documents_decision_number="150/QĐ-SNV", documents_issued_on="2025-09-12", procedure_count=38)
    d.fire("SNV", "snv.iso", "start_applying")
    d.on(date(2025, 12, 10))
    d.fire("SNV", "snv.iso", "record_internal_audit", internal_audit_on="2025-12-08", internal_audit_report="07/BC-SNV", nonconformities_open=0)
    d.on(date(2025, 12, 22))
    d.fire("SNV", "snv.iso", "record_management_review", management_review_on="2025-12-19", management_review_minutes="09/BB-SNV")
    d.fire("SNV", "snv.iso", "confirm_effective", effective_confirmed_on="2025-12-22")
    d.on(date(2025, 12, 26))
    d.fire("SNV", "snv.iso", "announce", announcement_number="201/QĐ-SNV", announced_on="2025-12-26")
    d.on(date(2026, 1, 5))
    d.fire("SNV", "snv.iso", "notify_lead", notice_number="05/TB-SNV", notice_sent_on="2026-01-05", posted_on_website=True)
    d.on(date(2026, 7, 2))
    d.fire("SNV", "tdc.lan", "register_legal_change", legal_document="Nghị định 118/2025/NĐ-CP", legal_change_effective_on="2026-07-01")

    # THPT Thoại Ngọc Hầu: announced and maintaining; inspected on site in October 2026.
    d.on(date(2025, 7, 21))
    d.fire("THPT-TNH", "tnh.iso", "approve_plan", plan_number="12/KH-THPTTNH", plan_approved_on="2025-07-18")
    d.on(date(2025, 8, 20))
    d.fire("THPT-TNH", "tnh.iso", "establish_committee", committee_decision_number="30/QĐ-THPTTNH", committee_decided_on="2025-08-18")
    d.fire("THPT-TNH", "tnh.iso", "issue_documents", documents_decision_number="31/QĐ-THPTTNH", documents_issued_on="2025-08-20", procedure_count=14)
    d.fire("THPT-TNH", "tnh.iso", "start_applying")
    d.on(date(2026, 1, 12))
    d.fire("THPT-TNH", "tnh.iso", "record_internal_audit", internal_audit_on="2026-01-09", internal_audit_report="02/BC-THPTTNH", nonconformities_open=0)
    d.fire("THPT-TNH", "tnh.iso", "record_management_review", management_review_on="2026-01-12", management_review_minutes="03/BB-THPTTNH")
    d.fire("THPT-TNH", "tnh.iso", "confirm_effective", effective_confirmed_on="2026-01-12")
    d.on(date(2026, 1, 14))
    d.fire("THPT-TNH", "tnh.iso", "announce", announcement_number="05/QĐ-THPTTNH", announced_on="2026-01-14")
    d.on(date(2026, 1, 21))
    d.fire("THPT-TNH", "tnh.iso", "notify_lead", notice_number="06/TB-THPTTNH", notice_sent_on="2026-01-21", posted_on_website=True)
    d.on(date(2026, 10, 16))
    log("Sở Nội vụ, THPT Thoại Ngọc Hầu: announced and maintaining")
    corrective = cases.open_case(
        session, demo_rt, d.actors["tdc.lan"], d.units["THPT-TNH"], "corrective_action",
        d.dates({"inspection_decision": "88/QĐ-SKHCN", "minutes_number": "14/BB-KT", "minutes_signed_on": "2026-10-15",
         "findings": "Chưa cập nhật quy trình theo văn bản pháp luật mới; chưa đăng thông báo công bố trên trang thông tin điện tử."}),
        parent_case=d.case_of["THPT-TNH"],
    )

    # THPT Long Xuyên: applying, audit done, management review pending.
    d.on(date(2025, 8, 11))
    d.fire("THPT-LX", "lx.iso", "approve_plan", plan_number="20/KH-THPTLX", plan_approved_on="2025-08-08")
    d.on(date(2025, 10, 6))
    d.fire("THPT-LX", "lx.iso", "establish_committee", committee_decision_number="41/QĐ-THPTLX", committee_decided_on="2025-10-03")
    d.fire("THPT-LX", "lx.iso", "issue_documents", documents_decision_number="42/QĐ-THPTLX", documents_issued_on="2025-10-06", procedure_count=11)
    d.fire("THPT-LX", "lx.iso", "start_applying")
    d.on(date(2026, 3, 16))
    d.fire("THPT-LX", "lx.iso", "record_internal_audit", internal_audit_on="2026-03-13", internal_audit_report="05/BC-THPTLX", nonconformities_open=3)

    log("THPT Long Xuyên: applying, management review pending")
    # UBND phường Long Xuyên: announced, notice to the Dept of S&T still pending.
    d.on(date(2025, 7, 28))
    d.fire("30307", "longxuyen.iso", "approve_plan", plan_number="77/KH-UBND", plan_approved_on="2025-07-25")
    d.on(date(2025, 9, 8))
    d.fire("30307", "longxuyen.iso", "establish_committee", committee_decision_number="210/QĐ-UBND", committee_decided_on="2025-09-05")
    d.fire("30307", "longxuyen.iso", "issue_documents", documents_decision_number="215/QĐ-UBND", documents_issued_on="2025-09-08", procedure_count=52)
    d.fire("30307", "longxuyen.iso", "start_applying")
    d.on(date(2026, 2, 24))
    d.fire("30307", "longxuyen.iso", "record_internal_audit", internal_audit_on="2026-02-23", internal_audit_report="11/BC-UBND", nonconformities_open=0)
    d.fire("30307", "longxuyen.iso", "record_management_review", management_review_on="2026-02-24", management_review_minutes="12/BB-UBND")
    d.on(date(2026, 11, 20))
    d.fire("30307", "longxuyen.iso", "confirm_effective", effective_confirmed_on="2026-11-20")
    d.fire("30307", "longxuyen.iso", "announce", announcement_number="330/QĐ-UBND", announced_on="2026-11-20")

    # THCS Mỹ Thới (lower secondary, in scope from 2025): building, late.
    d.on(date(2025, 9, 22))
    d.fire("THCS-MT", "thcsmt.iso", "approve_plan", plan_number="08/KH-THCSMT", plan_approved_on="2025-09-19")

    # Sở Tư pháp: building.
    d.on(date(2026, 6, 1))
    d.fire("STP", "stp.iso", "approve_plan", plan_number="60/KH-STP", plan_approved_on="2026-05-29")

    log("UBND phường Long Xuyên, THCS Mỹ Thới, Sở Tư pháp: announcing and building")
    counts = {"units": len(d.units), "users": len(d.actors), "cases": len(d.case_of) + 1}
    log(f"{counts['cases']} cases (corrective action #{corrective.id})")
    return counts


def catch_up(
    db: Database, rt: Runtime, mail: MailSettings, load_day: date | None = None, log: Callable[[str], None] = lambda _m: None
) -> int:
    """Fire and route every step due by the load instant (now; noon of ``load_day`` when given), as a
    scheduler would have; return how many fired."""
    from .engine.sweep import sweep

    now = rt.clock.now() if load_day is None else datetime.combine(load_day, time(12, 0), tzinfo=LOCAL_TZ)
    report = sweep(db, replace(rt, clock=FixedClock(now)), now)
    routed = route(db, now, mail)
    log(f"{report.count} reminders, escalations and overdue marks fired up to {now.strftime('%Y-%m-%d %H:%M')}; {routed} notifications routed")
    return report.count


__all__ = ["PRESENT", "build_demo", "catch_up", "has_data", "shift_for"]
