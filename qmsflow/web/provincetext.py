"""The province views' codes in the reader's words: lifecycle stages, unit kinds, escalation ranks."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

STAGES = {
    "none": _l("Chưa có kế hoạch"),
    "planned": _l("Trong kế hoạch"),
    "building": _l("Xây dựng"),
    "applying": _l("Áp dụng"),
    "announced": _l("Đã công bố, chờ thông báo"),
    "maintaining": _l("Duy trì, cải tiến"),
    "reannouncing": _l("Công bố lại"),
    "superseded": _l("Đã thay thế (sắp xếp)"),
    "withdrawn": _l("Không còn thuộc phạm vi"),
}

KINDS = {
    "province_pc": _l("UBND tỉnh"),
    "province_office": _l("Văn phòng UBND tỉnh"),
    "department": _l("Sở, ban, ngành"),
    "branch": _l("Chi cục"),
    "district_pc": _l("UBND huyện"),
    "commune_pc": _l("UBND xã, phường, đặc khu"),
    "high_school": _l("Trường THPT"),
    "lower_secondary_school": _l("Trường THCS"),
    "other": _l("Khác"),
}

RANKS = {2: _l("Cơ quan quản lý cấp trên"), 3: _l("Sở KH&CN"), 4: _l("UBND tỉnh")}


def stage_label(code: str) -> str:
    """A lifecycle stage (or ``none``) in the reader's language."""
    return str(STAGES.get(code, code))


def kind_label(code: str) -> str:
    """A unit kind in the reader's language."""
    return str(KINDS.get(code, code))


def rank_label(rank: int) -> str:
    """An escalation rank (lateness.TARGET_RANK) as the body it reached."""
    return str(RANKS.get(rank, "")) if rank >= 2 else ""


__all__ = ["kind_label", "rank_label", "stage_label"]
