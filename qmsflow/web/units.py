"""The units list (``/units``) and its exports: the engine's province status as of a day, filtered.

Parameters are the contract in docs/web.md (``q kind parent stage late escalated level open_ca
ever_announced announced due_within as_of sort page``), read by the engine's ``UnitFilter.parse``;
a bad one is named on the page with a 400, nothing else happens. Each dashboard figure links here
with its filter, and the count shown is the figure's (qmsflow/engine/province.py).

Exports stream the same rows: CSV in UTF-8 with a byte-order mark (so Excel reads Vietnamese), XLSX
from openpyxl's write-only workbook (a header row, column widths, the as-of date as a date). A cell
that starts with ``= + - @`` (or a tab or carriage return) is prefixed with ``'`` so a spreadsheet
never runs it as a formula.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from datetime import date
from typing import Any

from flask import Blueprint, Response, render_template, request, stream_with_context
from flask_babel import gettext as _

from ..engine.errors import ValidationFailed
from ..engine.province import STAGES, UnitFilter, UnitRow, iter_units, list_units
from ..engine.units import UnitKind
from .access import current_user, sign_in_required
from .context import services
from .i18n import current_language
from .provincetext import kind_label, stage_label

bp = Blueprint("units", __name__)
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
XLSX_WIDTHS = (14, 45, 22, 35, 24, 10, 12, 14, 14, 14)
XLSX_IN_MEMORY = 1024 * 1024
XLSX_CHUNK = 64 * 1024


def safe_cell(value: object) -> object:
    """A cell value a spreadsheet will not run as a formula."""
    if isinstance(value, str) and value.startswith(_DANGEROUS):
        return "'" + value
    return value


def _parse() -> tuple[UnitFilter | None, list[str]]:
    try:
        return UnitFilter.parse(request.args.to_dict()), []
    except ValidationFailed as refused:
        return None, [f"{p.field}: {p.render(current_language())}" for p in refused.problems]


@bp.get("/units")
@sign_in_required
def index() -> Any:
    """The units in the reader's scope as of a day, filtered, sorted, a page at a time."""
    f, errors = _parse()
    if f is not None:
        try:
            with services().db.read() as session:
                page = list_units(session, services().rt, current_user().actor, f)
        except ValidationFailed as refused:
            errors = [f"{p.field}: {p.render(current_language())}" for p in refused.problems]
    if errors or f is None:
        return render_template("units/index.html", errors=errors, page=None, f=UnitFilter(), **_choices()), 400
    return render_template("units/index.html", errors=[], page=page, f=f, **_choices())


def _choices() -> dict[str, Any]:
    return {
        "stages": [(s, stage_label(s)) for s in STAGES], "kinds": [(k.value, kind_label(k.value)) for k in UnitKind],
        "stage_label": stage_label, "kind_label": kind_label,
    }


def _header() -> list[str]:
    return [_("Mã"), _("Tên đơn vị"), _("Loại"), _("Đơn vị chủ quản"), _("Giai đoạn"), _("Quá hạn"),
            _("Cấp cảnh báo"), _("Đang khắc phục"), _("Đã từng công bố"), _("Tính đến ngày")]


def _values(row: UnitRow, as_of: date) -> list[object]:
    yes, no = _("có"), _("không")
    return [
        row.code, row.name, kind_label(row.kind), row.parent_name or "", stage_label(row.stage),
        yes if row.late else no, row.rank, yes if row.open_ca else no, yes if row.ever_announced else no, as_of,
    ]


@bp.get("/units/export.csv")
@sign_in_required
def export_csv() -> Any:
    """The filtered list as CSV (UTF-8 with BOM), streamed."""
    f, errors = _parse()
    if f is None:
        return render_template("units/index.html", errors=errors, page=None, f=UnitFilter(), **_choices()), 400
    rt, actor = services().rt, current_user().actor
    header = _header()

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        yield "\ufeff" + buffer.getvalue()
        with services().db.read() as session:
            for row in iter_units(session, rt, actor, f):
                buffer.seek(0)
                buffer.truncate()
                writer.writerow([safe_cell(v.strftime("%d/%m/%Y") if isinstance(v, date) else v) for v in _values(row, _as_of(f))])
                yield buffer.getvalue()

    return Response(
        stream_with_context(generate()), mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=units.csv"},
    )


def _as_of(f: UnitFilter) -> date:
    from ..engine.clock import local_date

    return f.as_of or local_date(services().rt.clock.now())


@bp.get("/units/export.xlsx")
@sign_in_required
def export_xlsx() -> Any:
    """The filtered list as XLSX (openpyxl write-only: header row, widths, the date as a date), streamed."""
    f, errors = _parse()
    if f is None:
        return render_template("units/index.html", errors=errors, page=None, f=UnitFilter(), **_choices()), 400
    from openpyxl import Workbook

    rt, actor = services().rt, current_user().actor
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(_("Đơn vị"))
    for letter, width in zip("ABCDEFGHIJ", XLSX_WIDTHS, strict=True):
        sheet.column_dimensions[letter].width = width
    sheet.append(_header())
    with services().db.read() as session:
        for row in iter_units(session, rt, actor, f):
            sheet.append([safe_cell(v) for v in _values(row, _as_of(f))])
    # The write-only sheet spools its rows to a temporary file as they come; the zip is written to a
    # spooled file too (in memory up to XLSX_IN_MEMORY, on disk beyond), so a country-sized export
    # never sits in memory whole, and it is sent a chunk at a time, the file closed (removed) at the end.
    out = tempfile.SpooledTemporaryFile(max_size=XLSX_IN_MEMORY)  # noqa: SIM115 - closed by chunks()
    try:
        workbook.save(out)
    except BaseException:
        out.close()
        raise
    size = out.tell()
    out.seek(0)

    def chunks() -> Iterator[bytes]:
        try:
            while block := out.read(XLSX_CHUNK):
                yield block
        finally:
            out.close()

    return Response(
        chunks(), mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": "attachment; filename=units.xlsx", "Content-Length": str(size)},
    )


__all__ = ["bp", "safe_cell"]
