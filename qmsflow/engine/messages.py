"""The words of reminders, escalations and digests, in Vietnamese (default) or English."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from .clock import LOCAL_TZ
from .definitions import Definition
from .models import Case, Timer, Unit
from .timers import timer_key

_TEXT = {
    "vi": {
        "reminder": "Nhắc hạn: {timer} - {unit}",
        "escalation": "Quá hạn (cấp {level}): {timer} - {unit}",
        "body": (
            "Hồ sơ #{case} ({workflow}) của {unit}\n"
            "Bước hiện tại: {state}\n"
            "Thời hạn: {timer}, hạn cuối ngày {due}.\n"
            "{extra}"
        ),
        "reminder_extra": "Đề nghị đơn vị hoàn thành trước thời hạn.",
        "escalation_extra": "Thời hạn đã qua. Thông báo này được gửi theo cấp báo cáo lần {level}.",
        "digest_subject": "Tổng hợp việc cần xử lý ngày {day} ({count} mục)",
        "digest_intro": "Kính gửi {name},\n\nCác thông báo mới trên qmsflow:\n",
    },
    "en": {
        "reminder": "Reminder: {timer} - {unit}",
        "escalation": "Overdue (level {level}): {timer} - {unit}",
        "body": (
            "Case #{case} ({workflow}) of {unit}\n"
            "Current step: {state}\n"
            "Deadline: {timer}, due by the end of {due}.\n"
            "{extra}"
        ),
        "reminder_extra": "Please complete it before the deadline.",
        "escalation_extra": "The deadline has passed. This is escalation level {level}.",
        "digest_subject": "Your items for {day} ({count})",
        "digest_intro": "Dear {name},\n\nNew notifications in qmsflow:\n",
    },
}


def text(language: str, key: str, **values: object) -> str:
    """Return the template ``key`` in ``language`` (Vietnamese unless English), filled in."""
    return _TEXT["en" if language == "en" else "vi"][key].format(**values)


def compose(
    session: Session, language: str, definition: Definition, case: Case, timer: Timer, kind: str, level: int
) -> tuple[str, str]:
    """Return the subject and body of a reminder or an escalation for ``case``'s ``timer``."""
    unit = session.get(Unit, case.unit_id)
    unit_name = unit.name if unit else str(case.unit_id)
    spec = definition.timer_spec(timer_key(timer))
    timer_label = spec.label.get(language)
    due = timer.due_date.strftime("%d/%m/%Y")
    subject = text(language, kind, timer=timer_label, unit=unit_name, level=level)
    body = text(
        language,
        "body",
        case=case.id,
        workflow=definition.spec.label.get(language),
        unit=unit_name,
        state=definition.spec.states[case.state].label.get(language),
        timer=timer_label,
        due=due,
        extra=text(language, f"{kind}_extra", level=level),
    )
    return subject[:255], body


def local_time(at: datetime) -> str:
    """Return an instant as dd/mm/yyyy HH:MM in Vietnam."""
    return at.astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M")


__all__ = ["compose", "local_time", "text"]
