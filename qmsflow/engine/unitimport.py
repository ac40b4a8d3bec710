"""Import and export of the register of units (and their officers' accounts) as CSV or XLSX.

One column layout, documented in docs/registry.md, "Importing and exporting units": a units file
with one row per unit as it stands on a day (``as_of``), its head and ISO officer as columns; a
users file of its own. ``plan_import`` reads both and returns every bad row with its row number and
reason, and what the import would create or change; ``apply_import`` plans again in the caller's
transaction and either applies everything through the services of engine/units.py and
engine/users.py (so unit versions and the admin log stay right) or raises ``ImportRefused`` with
every problem, changing nothing. Rows are compared with what is stored, so importing the same file
again, or a file ``export_units`` wrote, changes nothing.

A unit is matched by the code it holds on ``as_of`` (a code names different units in different
periods, docs/architecture.md, "Units as identities"); a user by username. Empty contact cells
leave the stored contact as it is. Cells that a spreadsheet would run as a formula are written with
a leading apostrophe, which the import takes off again.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import units as unit_services
from . import users as user_services
from .errors import Conflict, FieldProblem, ImportRefused, NotPermitted, ValidationFailed
from .language import CLI, LANGUAGES, problem_text, render
from .models import Contact, Unit, UnitParent, UnitVersion, User
from .permissions import AdminArea, require_admin
from .runtime import Runtime
from .units import UnitKind

if TYPE_CHECKING:
    from .permissions import Actor

UNIT_COLUMNS = (
    "code", "name", "kind", "parent_code", "valid_from", "is_lead",
    "head_name", "head_email", "head_phone", "iso_officer_name", "iso_officer_email", "iso_officer_phone",
)
UNIT_REQUIRED = ("code", "name", "kind", "parent_code", "valid_from")
USER_COLUMNS = ("username", "full_name", "email", "role", "unit_code", "language")
USER_REQUIRED = ("username", "role", "unit_code")
CONTACT_ROLES = ("head", "iso_officer")
MAX_ROWS = 50_000  # per file: a sheet of a million rows is refused before it is read whole
FORMATS = ("csv", "xlsx")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRUE = {"yes", "y", "true", "1", "x", "có"}
_FALSE = {"no", "n", "false", "0", "", "không"}
SHEETS = {"units": {"vi": "tệp đơn vị", "en": "units file"}, "users": {"vi": "tệp người dùng", "en": "users file"}}


# ------------------------------------------------------------------------------ what a plan says


@dataclass(frozen=True)
class RowProblem:
    """One bad row (or a bad file: ``row`` 0): the file, the row number as a spreadsheet shows it, the column."""

    sheet: str  # "units" or "users"
    row: int  # 1 is the header; 0: the file as a whole
    column: str
    problem: FieldProblem

    def render(self, language: str) -> str:
        """The problem as one line in ``language``."""
        text = problem_text(self.problem, language)
        if self.row == 0:
            return render(language, CLI["import_file"], {"sheet": SHEETS[self.sheet], "problem": text})
        return render(
            language, CLI["import_row"],
            {"sheet": SHEETS[self.sheet], "row": self.row, "column": self.column or "-", "problem": text},
        )

    def as_field_problem(self) -> FieldProblem:
        return FieldProblem(f"{self.sheet}:{self.row}:{self.column}", self.problem.code, self.problem.params)


@dataclass(frozen=True)
class PlannedChange:
    """What one row will do: ``create`` a unit or user, or ``change`` the listed columns (old, new)."""

    sheet: str
    row: int
    key: str  # the unit's code or the username
    action: str  # "create" | "change"
    changes: tuple[tuple[str, str, str], ...] = ()


@dataclass
class ImportPlan:
    """An import read and checked against what is stored on ``as_of``, before anything is written."""

    as_of: date
    problems: list[RowProblem] = field(default_factory=list)
    changes: list[PlannedChange] = field(default_factory=list)
    unchanged: int = 0  # rows that match what is stored
    unit_rows: list[_UnitRow] = field(default_factory=list, repr=False)
    user_rows: list[_UserRow] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the import may be committed."""
        return not self.problems

    def counts(self) -> dict[str, int]:
        """Rows to create and to change per file, and rows that are already as stored."""
        out = {"units_created": 0, "units_changed": 0, "users_created": 0, "users_changed": 0, "unchanged": self.unchanged}
        for c in self.changes:
            out[f"{c.sheet}_{'created' if c.action == 'create' else 'changed'}"] += 1
        return out


@dataclass(frozen=True)
class ImportResult:
    """What a committed import did; ``passwords`` are the new users' one-time passwords, to be shown once."""

    plan: ImportPlan
    passwords: tuple[tuple[str, str], ...]


# ------------------------------------------------------------------------------ reading the files


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    if len(text) > 1 and text[0] == "'" and text[1] in _FORMULA_START:
        text = text[1:]  # a cell the export protected from being run as a formula
    return text


def _raw_rows(data: bytes) -> tuple[Iterable[Sequence[Any]] | None, FieldProblem | None]:
    if not data.strip():
        return None, FieldProblem("file", "import_empty")
    if data[:4] == b"PK\x03\x04":
        try:
            from openpyxl import load_workbook

            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            sheet = book.worksheets[0]
            return list(sheet.iter_rows(values_only=True, max_row=MAX_ROWS + 2)), None
        except Exception as exc:  # a damaged or foreign zip: the reader's own words name it
            return None, FieldProblem("file", "import_unreadable", {"reason": type(exc).__name__})
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, FieldProblem("file", "import_not_utf8", {"position": exc.start})
    first = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first and "," not in first else ","
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), None


def read_table(
    data: bytes, sheet: str, columns: Sequence[str], required: Sequence[str]
) -> tuple[list[tuple[int, dict[str, str]]], list[RowProblem]]:
    """Read a CSV (UTF-8, with or without BOM; comma or semicolon) or XLSX file (its first sheet).

    Returns ``(row number, {column: text})`` for each non-empty row, and the file's problems (no
    rows when the file or its header cannot be used). Header names are matched without case.
    """
    raw, problem = _raw_rows(data)
    if problem is not None or raw is None:
        return [], [RowProblem(sheet, 0, "", problem or FieldProblem("file", "import_empty"))]
    rows = iter(raw)
    header = next(rows, None)
    if header is None:
        return [], [RowProblem(sheet, 0, "", FieldProblem("file", "import_empty"))]
    names = [_cell(h).lower() for h in header]
    while names and not names[-1]:
        names.pop()
    problems: list[RowProblem] = []
    unknown = [n or "(empty)" for n in names if n not in columns]
    missing = [c for c in required if c not in names]
    twice = sorted({n for n in names if n and names.count(n) > 1})
    if unknown:
        problems.append(RowProblem(sheet, 1, "", FieldProblem("header", "unknown_columns", {"columns": unknown, "known": list(columns)})))
    if missing:
        problems.append(RowProblem(sheet, 1, "", FieldProblem("header", "missing_columns", {"columns": missing})))
    if twice:
        problems.append(RowProblem(sheet, 1, "", FieldProblem("header", "columns_twice", {"columns": twice})))
    if problems:
        return [], problems
    out: list[tuple[int, dict[str, str]]] = []
    for number, values in enumerate(rows, start=2):
        if number > MAX_ROWS + 1:
            return [], [RowProblem(sheet, 0, "", FieldProblem("file", "too_many_rows", {"n": MAX_ROWS}))]
        cells = [_cell(v) for v in values]
        if not any(cells):
            continue
        if any(cells[len(names):]):
            problems.append(RowProblem(sheet, number, "", FieldProblem("row", "extra_cells", {"n": len(names)})))
            continue
        record = {c: "" for c in columns}
        record.update(zip(names, cells, strict=False))
        out.append((number, record))
    return out, problems


# ------------------------------------------------------------------------------ checking the rows


@dataclass
class _UnitRow:
    row: int
    code: str
    name: str
    kind: str
    parent_code: str
    valid_from: date
    is_lead: bool
    contacts: dict[str, tuple[str, str | None, str | None]]  # role -> (name, email, phone), given ones only
    stored: _Stored | None = None  # the unit holding the code on as_of
    changes: tuple[tuple[str, str, str], ...] = ()


@dataclass
class _UserRow:
    row: int
    username: str
    full_name: str
    email: str | None
    role: str
    unit_code: str
    language: str
    stored: User | None = None
    changes: tuple[tuple[str, str, str], ...] = ()


@dataclass
class _Stored:
    unit_id: int
    unit_from: date
    version: UnitVersion
    parent_code: str
    contacts: dict[str, tuple[str, str | None, str | None]]


def _parse_date(text: str) -> tuple[date | None, FieldProblem | None]:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return None, FieldProblem("valid_from", "not_a_date")
    try:
        return date.fromisoformat(text), None
    except ValueError:
        return None, FieldProblem("valid_from", "not_a_real_date")


def _email_problem(column: str, value: str) -> FieldProblem | None:
    if value and (len(value) > 255 or not _EMAIL.match(value)):
        return FieldProblem(column, "not_an_email", {"value": repr(value)})
    return None


def _check_unit_record(number: int, rec: dict[str, str], as_of: date) -> tuple[_UnitRow | None, list[RowProblem]]:
    problems: list[RowProblem] = []

    def bad(column: str, code: str, params: dict[str, Any] | None = None) -> None:
        problems.append(RowProblem("units", number, column, FieldProblem(column, code, params or {})))

    code, name, kind = rec["code"], rec["name"], rec["kind"]
    for column, value, limit in (("code", code, 32), ("name", name, 255), ("parent_code", rec["parent_code"], 32)):
        if not value and column != "parent_code":
            bad(column, "required")
        elif len(value) > limit:
            bad(column, "max_length", {"n": limit})
    if kind not in {k.value for k in UnitKind}:
        bad("kind", "unknown_kind", {"value": repr(kind), "choices": [k.value for k in UnitKind]})
    valid_from, date_problem = _parse_date(rec["valid_from"])
    if date_problem is not None:
        bad("valid_from", date_problem.code)
    elif valid_from is not None and valid_from > as_of:
        bad("valid_from", "after_as_of", {"day": as_of})
    lead_text = rec["is_lead"].lower()
    if lead_text not in _TRUE | _FALSE:
        bad("is_lead", "not_a_boolean")
    contacts: dict[str, tuple[str, str | None, str | None]] = {}
    for role in CONTACT_ROLES:
        c_name, c_email, c_phone = rec[f"{role}_name"], rec[f"{role}_email"], rec[f"{role}_phone"]
        email_problem = _email_problem(f"{role}_email", c_email)
        if email_problem is not None:
            bad(f"{role}_email", "not_an_email", email_problem.params)
        if len(c_name) > 255:
            bad(f"{role}_name", "max_length", {"n": 255})
        if len(c_phone) > 32:
            bad(f"{role}_phone", "max_length", {"n": 32})
        if (c_email or c_phone) and not c_name:
            bad(f"{role}_name", "contact_name_needed")
        if c_name:
            contacts[role] = (c_name, c_email or None, c_phone or None)
    if problems or valid_from is None:
        return None, problems
    return _UnitRow(number, code, name, kind, rec["parent_code"], valid_from, lead_text in _TRUE, contacts), []


def _stored_units(session: Session, as_of: date) -> dict[str, _Stored]:
    """Every unit valid on ``as_of`` by its code that day, with parent code and contacts: three statements."""
    rows = session.execute(
        select(UnitVersion, Unit.valid_from).join(Unit, Unit.id == UnitVersion.unit_id).where(
            UnitVersion.valid_from <= as_of, (UnitVersion.valid_to.is_(None)) | (UnitVersion.valid_to > as_of)
        )
    ).tuples().all()
    code_of = {version.unit_id: version.code for version, _ in rows}
    parents = dict(
        session.execute(
            select(UnitParent.unit_id, UnitParent.parent_id).where(
                UnitParent.valid_from <= as_of, (UnitParent.valid_to.is_(None)) | (UnitParent.valid_to > as_of)
            )
        ).tuples().all()
    )
    contacts: dict[int, dict[str, tuple[str, str | None, str | None]]] = {}
    for contact in session.scalars(select(Contact)):
        contacts.setdefault(contact.unit_id, {})[contact.role] = (contact.name, contact.email, contact.phone)
    return {
        version.code: _Stored(
            version.unit_id, unit_from, version, code_of.get(parents.get(version.unit_id, -1), ""),
            contacts.get(version.unit_id, {}),
        )
        for version, unit_from in rows
    }


def _plan_units(session: Session, plan: ImportPlan, data: bytes) -> dict[str, _Stored]:
    records, problems = read_table(data, "units", UNIT_COLUMNS, UNIT_REQUIRED)
    plan.problems += problems
    stored = _stored_units(session, plan.as_of)
    seen: dict[str, tuple[int, dict[str, str]]] = {}
    rows: list[_UnitRow] = []
    failed: list[tuple[int, dict[str, str]]] = []
    for number, rec in records:
        earlier = seen.get(rec["code"]) if rec["code"] else None
        if earlier is not None:
            code = "duplicate_row" if earlier[1] == rec else "code_twice"
            plan.problems.append(RowProblem("units", number, "code", FieldProblem("code", code, {"row": earlier[0]})))
            continue
        seen[rec["code"]] = (number, rec)
        row, row_problems = _check_unit_record(number, rec, plan.as_of)
        plan.problems += row_problems
        if row is not None:
            row.stored = stored.get(row.code)
            rows.append(row)
        else:
            failed.append((number, rec))
    by_code = {r.code: r for r in rows}
    for number, rec in failed:  # a row with other problems still has its parent checked, so one pass names all
        parent = rec["parent_code"]
        if parent and parent != rec["code"] and parent not in seen and parent not in stored:
            plan.problems.append(RowProblem("units", number, "parent_code", FieldProblem(
                "parent_code", "unknown_parent", {"code": parent, "day": plan.as_of})))
    # the code of a new unit must be free from its first day on: a unit holding it before or after as_of clashes
    new_codes = [r.code for r in rows if r.stored is None]
    clashes: dict[str, list[UnitVersion]] = {}
    if new_codes:
        for version in session.scalars(select(UnitVersion).where(UnitVersion.code.in_(new_codes))):
            clashes.setdefault(version.code, []).append(version)
    stored_lead = next((s for s in stored.values() if s.version.is_lead), None)
    leads = [r for r in rows if r.is_lead]
    for r in rows:
        def bad(column: str, code: str, params: dict[str, Any] | None = None, r: _UnitRow = r) -> None:
            plan.problems.append(RowProblem("units", r.row, column, FieldProblem(column, code, params or {})))

        if r.stored is None:
            for version in clashes.get(r.code, []):
                if version.valid_to is None or version.valid_to > r.valid_from:
                    bad("code", "code_taken", {"name": version.name, "start": version.valid_from,
                                               "end": version.valid_to or "-"})
                    break
        elif r.stored.unit_from != r.valid_from:
            bad("valid_from", "valid_from_differs", {"day": r.stored.unit_from})
        if r.parent_code:
            if r.parent_code == r.code:
                bad("parent_code", "under_itself")
            elif r.parent_code not in seen and r.parent_code not in stored:
                bad("parent_code", "unknown_parent", {"code": r.parent_code, "day": plan.as_of})
        if r.is_lead and leads[0] is not r:
            bad("is_lead", "lead_twice", {"row": leads[0].row})
        elif r.is_lead and stored_lead is not None and stored_lead.version.code != r.code:
            other = by_code.get(stored_lead.version.code)
            if other is None or other.is_lead:
                bad("is_lead", "lead_taken", {"name": stored_lead.version.name})
    # a cycle through the file's parents (stored parents where the file is silent)
    parent_of = {code: s.parent_code for code, s in stored.items()} | {r.code: r.parent_code for r in rows}
    for r in rows:
        if r.parent_code == r.code:
            continue  # said above
        walk, current = {r.code}, parent_of.get(r.parent_code) if r.parent_code else None
        while current:
            if current == r.code:
                plan.problems.append(RowProblem("units", r.row, "parent_code", FieldProblem("parent_code", "parent_cycle")))
                break
            if current in walk:
                break
            walk.add(current)
            current = parent_of.get(current)
    plan.unit_rows = rows
    return stored


def _unit_changes(r: _UnitRow) -> tuple[tuple[str, str, str], ...]:
    s = r.stored
    if s is None:
        return ()
    v = s.version
    pairs = [("name", v.name, r.name), ("kind", v.kind, r.kind), ("parent_code", s.parent_code, r.parent_code),
             ("is_lead", _yes(v.is_lead), _yes(r.is_lead))]
    for role, (name, email, phone) in r.contacts.items():
        old = s.contacts.get(role, ("", None, None))
        pairs += [(f"{role}_name", old[0], name), (f"{role}_email", old[1] or "", email or ""),
                  (f"{role}_phone", old[2] or "", phone or "")]
    return tuple((c, a, b) for c, a, b in pairs if a != b)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _plan_users(session: Session, plan: ImportPlan, data: bytes, stored_units: dict[str, _Stored]) -> None:
    records, problems = read_table(data, "users", USER_COLUMNS, USER_REQUIRED)
    plan.problems += problems
    file_codes = {r.code for r in plan.unit_rows}
    seen: dict[str, tuple[int, dict[str, str]]] = {}
    rows: list[_UserRow] = []
    roles = [r.value for r in user_services.USER_ROLES]
    scoped = {r.value for r in user_services.SCOPED_ROLES}
    for number, rec in records:
        rec["username"] = rec["username"].lower()
        problems_before = len(plan.problems)

        def bad(column: str, code: str, params: dict[str, Any] | None = None, number: int = number) -> None:
            plan.problems.append(RowProblem("users", number, column, FieldProblem(column, code, params or {})))

        earlier = seen.get(rec["username"]) if rec["username"] else None
        if earlier is not None:
            bad("username", "duplicate_row" if earlier[1] == rec else "username_twice", {"row": earlier[0]})
            continue
        seen[rec["username"]] = (number, rec)
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,63}", rec["username"]):
            bad("username", "username_format")
        if len(rec["full_name"]) > 255:
            bad("full_name", "max_length", {"n": 255})
        email_problem = _email_problem("email", rec["email"])
        if email_problem is not None:
            bad("email", "not_an_email", email_problem.params)
        if rec["role"] not in roles:
            bad("role", "one_of", {"choices": roles})
        elif rec["role"] in scoped and not rec["unit_code"]:
            bad("unit_code", "unit_needed", {"role": rec["role"]})
        if rec["unit_code"] and rec["unit_code"] not in file_codes and rec["unit_code"] not in stored_units:
            bad("unit_code", "unknown_unit_code", {"code": rec["unit_code"], "day": plan.as_of})
        language = rec["language"] or "vi"
        if language not in LANGUAGES:
            bad("language", "one_of", {"choices": list(LANGUAGES)})
        if len(plan.problems) == problems_before:
            rows.append(_UserRow(number, rec["username"], rec["full_name"], rec["email"] or None, rec["role"],
                                 rec["unit_code"], language))
    if rows:
        existing = {u.username: u for u in session.scalars(select(User).where(User.username.in_([r.username for r in rows])))}
        unit_codes = {s.unit_id: code for code, s in stored_units.items()}
        for r in rows:
            r.stored = existing.get(r.username)
            if r.stored is not None:
                u = r.stored
                pairs = [("full_name", u.full_name, r.full_name), ("email", u.email or "", r.email or ""),
                         ("role", u.role, r.role), ("unit_code", unit_codes.get(u.unit_id, "") if u.unit_id else "", r.unit_code),
                         ("language", u.language, r.language)]
                r.changes = tuple((c, a, b) for c, a, b in pairs if a != b)
    plan.user_rows = rows


def plan_import(
    session: Session, actor: Actor, units_data: bytes, *, users_data: bytes | None = None, as_of: date
) -> ImportPlan:
    """Read and check an import against what is stored on ``as_of``; write nothing.

    Units need an administrator of imports (admin or lead); a users file an administrator of users.
    """
    require_admin(actor, AdminArea.IMPORT)
    if users_data is not None:
        require_admin(actor, AdminArea.USERS)
    plan = ImportPlan(as_of)
    stored = _plan_units(session, plan, units_data)
    if users_data is not None:
        _plan_users(session, plan, users_data, stored)
    for r in plan.unit_rows:
        if r.stored is None:
            plan.changes.append(PlannedChange("units", r.row, r.code, "create"))
        else:
            r.changes = _unit_changes(r)
            if r.changes:
                plan.changes.append(PlannedChange("units", r.row, r.code, "change", r.changes))
            else:
                plan.unchanged += 1
    for u in plan.user_rows:
        if u.stored is None:
            plan.changes.append(PlannedChange("users", u.row, u.username, "create"))
        elif u.changes:
            plan.changes.append(PlannedChange("users", u.row, u.username, "change", u.changes))
        else:
            plan.unchanged += 1
    plan.problems.sort(key=lambda p: (p.sheet != "units", p.row))
    return plan


# ------------------------------------------------------------------------------ committing


def apply_import(
    session: Session, rt: Runtime, actor: Actor, units_data: bytes, *, users_data: bytes | None = None, as_of: date
) -> ImportResult:
    """Check the import again and apply all of it in the caller's transaction, or raise ``ImportRefused``.

    A refusal lists every problem; the caller's transaction must then be rolled back (``db.write()``
    does so when the error leaves it), so nothing of the file is kept.
    """
    plan = plan_import(session, actor, units_data, users_data=users_data, as_of=as_of)
    if not plan.ok:
        raise ImportRefused([p.as_field_problem() for p in plan.problems], plan.problems)
    problems: list[RowProblem] = []
    ids: dict[str, int] = {}  # the units this import creates, by code
    stored_ids = _stored_ids(session, as_of)

    def attempt(sheet: str, row: int, work: Any) -> Any:
        try:
            return work()
        except ValidationFailed as exc:
            problems.extend(RowProblem(sheet, row, p.field, p) for p in exc.problems)
        except (Conflict, NotPermitted) as exc:
            problems.append(RowProblem(sheet, row, "", FieldProblem("row", "import_refused_row", {"reason": str(exc)})))
        return None

    # 1. the lead flag leaves its old unit first (the database keeps one lead unit at a time)
    for r in plan.unit_rows:
        if r.stored is not None and r.stored.version.is_lead and not r.is_lead:
            unit_id = r.stored.unit_id
            attempt("units", r.row, lambda unit_id=unit_id: unit_services.change_unit(
                session, rt, actor, unit_id, on=as_of, is_lead=False))
    # 2. new units, parents before children
    new = {r.code: r for r in plan.unit_rows if r.stored is None}
    for r in _parents_first(new):
        unit = attempt("units", r.row, lambda r=r: _create(session, rt, actor, r, ids, stored_ids))
        if unit is not None:
            ids[r.code] = unit.id
    # 3. changes of stored units (a new parent may be a unit made in step 2)
    for r in plan.unit_rows:
        if r.stored is None or not r.changes:
            continue
        attempt("units", r.row, lambda r=r: _change(session, rt, actor, r, ids, stored_ids, as_of))
    # 4. users
    passwords: list[tuple[str, str]] = []
    for u in plan.user_rows:
        result = attempt("users", u.row, lambda u=u: _user(session, rt, actor, u, ids, stored_ids))
        if isinstance(result, str):
            passwords.append((u.username, result))
    if problems:
        raise ImportRefused([p.as_field_problem() for p in problems], problems)
    session.flush()
    return ImportResult(plan, tuple(passwords))


def _stored_ids(session: Session, as_of: date) -> dict[str, int]:
    return dict(
        session.execute(
            select(UnitVersion.code, UnitVersion.unit_id).where(
                UnitVersion.valid_from <= as_of, (UnitVersion.valid_to.is_(None)) | (UnitVersion.valid_to > as_of)
            )
        ).tuples().all()
    )


def _parents_first(new: dict[str, _UnitRow]) -> list[_UnitRow]:
    ordered: list[_UnitRow] = []
    placed: set[str] = set()

    def place(r: _UnitRow, depth: int = 0) -> None:
        if r.code in placed or depth > len(new):
            return
        parent = new.get(r.parent_code)
        if parent is not None:
            place(parent, depth + 1)
        placed.add(r.code)
        ordered.append(r)

    for r in new.values():
        place(r)
    return ordered


def _unit_of(session: Session, code: str, ids: dict[str, int], stored_ids: dict[str, int]) -> Unit:
    unit_id = ids.get(code, stored_ids.get(code))
    unit = session.get(Unit, unit_id) if unit_id is not None else None
    if unit is None:
        raise ValidationFailed([FieldProblem("parent_code", "unknown_parent", {"code": code, "day": "-"})])
    return unit


def _create(session: Session, rt: Runtime, actor: Actor, r: _UnitRow, ids: dict[str, int], stored_ids: dict[str, int]) -> Unit:
    parent = _unit_of(session, r.parent_code, ids, stored_ids) if r.parent_code else None
    # the link begins when both exist: a commune older than its province's new People's Committee
    link_from = max(r.valid_from, parent.valid_from) if parent is not None else r.valid_from
    unit = unit_services.create_unit(
        session, code=r.code, name=r.name, kind=r.kind, valid_from=r.valid_from, is_lead=r.is_lead,
        parent=parent if parent is not None and link_from == r.valid_from else None, rt=rt, actor=actor,
    )
    if parent is not None and link_from != r.valid_from:
        unit_services.set_parent(session, unit, parent, link_from, rt=rt, actor=actor)
    for role, (name, email, phone) in r.contacts.items():
        unit_services.set_contact(session, unit, role, name, email, phone, rt=rt, actor=actor)
    return unit


def _change(
    session: Session, rt: Runtime, actor: Actor, r: _UnitRow, ids: dict[str, int], stored_ids: dict[str, int], as_of: date
) -> None:
    assert r.stored is not None
    changed = {c for c, _, _ in r.changes}
    kwargs: dict[str, Any] = {}
    if "name" in changed:
        kwargs["name"] = r.name
    if "kind" in changed:
        kwargs["kind"] = r.kind
    if "is_lead" in changed:
        kwargs["is_lead"] = r.is_lead
    if "parent_code" in changed:
        kwargs["parent_id"] = _unit_of(session, r.parent_code, ids, stored_ids).id if r.parent_code else None
    unit_id = r.stored.unit_id
    if kwargs:
        unit_services.change_unit(session, rt, actor, unit_id, on=as_of, **kwargs)
    unit = session.get(Unit, unit_id)
    assert unit is not None
    for role in CONTACT_ROLES:
        if not any(c.startswith(f"{role}_") for c in changed):
            continue
        name, email, phone = r.contacts[role]
        unit_services.set_contact(session, unit, role, name, email, phone, rt=rt, actor=actor)


def _user(
    session: Session, rt: Runtime, actor: Actor, u: _UserRow, ids: dict[str, int], stored_ids: dict[str, int]
) -> str | None:
    now = rt.clock.now()
    unit = _unit_of(session, u.unit_code, ids, stored_ids) if u.unit_code else None
    if u.stored is None:
        user = user_services.create_user(
            session, username=u.username, role=u.role, unit=unit, full_name=u.full_name, email=u.email,
            language=u.language, now=now, rt=rt, actor=actor,
        )
        return user_services.reset_password(session, user, now=now, rt=rt, actor=actor)
    if not u.changes:
        return None
    user_services.update_user(
        session, u.stored, full_name=u.full_name, email=u.email, role=u.role, unit=unit, now=now, rt=rt, actor=actor
    )
    user_services.set_language(session, u.stored, u.language, rt=rt, actor=actor)
    return None


# ------------------------------------------------------------------------------ export


def _protect(value: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading apostrophe (OWASP, "CSV injection")."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def unit_rows(session: Session, as_of: date) -> list[list[str]]:
    """The units valid on ``as_of`` as rows of ``UNIT_COLUMNS``, by code (header not included)."""
    stored = _stored_units(session, as_of)
    out = []
    for code in sorted(stored):
        s = stored[code]
        head = s.contacts.get("head", ("", None, None))
        iso = s.contacts.get("iso_officer", ("", None, None))
        out.append([
            code, s.version.name, s.version.kind, s.parent_code, s.unit_from.isoformat(), _yes(s.version.is_lead),
            head[0], head[1] or "", head[2] or "", iso[0], iso[1] or "", iso[2] or "",
        ])
    return out


def user_rows(session: Session, as_of: date) -> list[list[str]]:
    """The active users as rows of ``USER_COLUMNS``; a user whose unit is not valid on ``as_of`` is left out."""
    codes = {s.unit_id: code for code, s in _stored_units(session, as_of).items()}
    out = []
    for user in session.scalars(select(User).where(User.active.is_(True)).order_by(User.username)):
        if user.unit_id is not None and user.unit_id not in codes:
            continue
        out.append([user.username, user.full_name, user.email or "", user.role,
                    codes.get(user.unit_id, "") if user.unit_id else "", user.language])
    return out


def write_table(columns: Sequence[str], rows: Iterable[Sequence[str]], fmt: str) -> bytes:
    """Write a header and rows as CSV (UTF-8 with BOM, so spreadsheets read the diacritics) or XLSX."""
    if fmt not in FORMATS:
        raise ValidationFailed([FieldProblem("format", "one_of", {"choices": list(FORMATS)})])
    if fmt == "csv":
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(columns)
        writer.writerows([_protect(v) for v in row] for row in rows)
        return ("\ufeff" + buffer.getvalue()).encode("utf-8")
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("units" if "code" in columns else "users")
    sheet.append(list(columns))
    for row in rows:
        sheet.append([_protect(v) for v in row])  # text cells: openpyxl would store "=..." as a formula
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def export_units(session: Session, *, as_of: date, fmt: str) -> bytes:
    """The units file of ``as_of``, in the layout ``apply_import`` reads."""
    return write_table(UNIT_COLUMNS, unit_rows(session, as_of), fmt)


def export_users(session: Session, *, as_of: date, fmt: str) -> bytes:
    """The users file (no passwords), in the layout ``apply_import`` reads."""
    return write_table(USER_COLUMNS, user_rows(session, as_of), fmt)


__all__ = [
    "FORMATS",
    "MAX_ROWS",
    "UNIT_COLUMNS",
    "USER_COLUMNS",
    "ImportPlan",
    "ImportResult",
    "PlannedChange",
    "RowProblem",
    "apply_import",
    "export_units",
    "export_users",
    "plan_import",
    "read_table",
    "unit_rows",
    "user_rows",
    "write_table",
]
