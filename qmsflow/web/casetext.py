"""How the case pages say the engine's facts: deadlines, escalation bodies, what a timeline row was.

Words only: whether something is late, whose it is and what level it reached are the engine's
answers (qmsflow/engine/lateness.py, deadlines.py); this module puts them in the reader's language.
"""

from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import ngettext

from ..engine.definitions import Target
from ..engine.timeline import TimelineEntry
from . import i18n


def target_label(target: Target | str | None) -> str:
    """The body an escalation went to, in words."""
    words = {
        Target.UNIT_HEAD.value: _("Thủ trưởng đơn vị"),
        Target.SUPERVISOR.value: _("Cơ quan quản lý cấp trên"),
        Target.LEAD.value: _("Sở Khoa học và Công nghệ"),
        Target.PROVINCIAL_PC.value: _("UBND tỉnh"),
    }
    value = target.value if isinstance(target, Target) else target
    return words.get(value or "", value or "")


def stage_label(stage: str | None) -> str:
    """A state's stage of the lifecycle (docs/domain.md), in words."""
    words = {
        "build": _("Xây dựng"),
        "apply": _("Áp dụng"),
        "announce": _("Công bố"),
        "maintain": _("Duy trì"),
        "improve": _("Cải tiến"),
        "remediate": _("Khắc phục"),
    }
    return words.get(stage or "", stage or "")


def days_left(days: int | None) -> str:
    """Working days left before a deadline, or how many it is late."""
    if days is None:
        return ""
    if days > 0:
        return ngettext("còn %(days)s ngày làm việc", "còn %(days)s ngày làm việc", days, days=i18n.format_number(days))
    if days == 0:
        return _("đến hạn hôm nay")
    return ngettext("quá hạn %(days)s ngày làm việc", "quá hạn %(days)s ngày làm việc", -days, days=i18n.format_number(-days))


def entry_title(entry: TimelineEntry) -> str:
    """What one history row was, in a few words (a transition: the event's label)."""
    about = entry.about or ""
    details = entry.details
    if entry.kind == "opened":
        return _("Mở hồ sơ")
    if entry.kind == "transition":
        return entry.event_label or entry.event or ""
    if entry.kind == "reminder":
        return _("Nhắc hạn: %(about)s", about=about)
    if entry.kind == "reminder_skipped":
        return _("Không gửi nhắc hạn (đã qua thời điểm nhắc): %(about)s", about=about)
    if entry.kind == "deadline_passed":
        return _("Đã quá hạn: %(about)s", about=about)
    if entry.kind == "escalated":
        return _("Báo cáo chậm trễ lên %(body)s (mức %(level)s): %(about)s",
                 body=target_label(str(details.get("target", ""))), level=details.get("level", ""), about=about)
    if entry.kind == "escalation_skipped":
        return _("Không chuyển cấp được (không có cơ quan nhận): %(about)s", about=about)
    if entry.kind == "timer_action_refused":
        return _("Hệ thống không tự ghi nhận quá hạn được: %(about)s", about=about)
    if entry.kind == "obligation_opened":
        return _("Bắt đầu nghĩa vụ: %(about)s, hạn %(due)s", about=about, due=_iso_day(details.get("due")))
    if entry.kind == "obligation_fulfilled":
        return _("Hoàn thành nghĩa vụ: %(about)s", about=about)
    if entry.kind == "deadline_moved":
        return _("Dời hạn theo lịch làm việc: từ %(old)s sang %(new)s", old=_iso_day(details.get("from")), new=_iso_day(details.get("to")))
    return entry.kind


def is_system_row(entry: TimelineEntry) -> bool:
    """Whether the row is the scheduler's (a reminder, an escalation, a deadline), shown as such."""
    return entry.kind not in ("opened", "transition") or entry.actor == "system"


def _iso_day(value: object) -> str:
    from .eventforms import show_day

    return show_day(value)


def value_text(value: object) -> str:
    """A recorded field's value as a person reads it (dates dd/mm/yyyy, yes/no in words)."""
    from .eventforms import CHOICE_LABELS, show_day

    if value is True:
        return _("Có")
    if value is False:
        return _("Không")
    if isinstance(value, int):
        return i18n.format_number(value)
    if isinstance(value, str) and value in CHOICE_LABELS:
        return str(CHOICE_LABELS[value])
    return show_day(value)


__all__ = ["days_left", "entry_title", "is_system_row", "stage_label", "target_label", "value_text"]
