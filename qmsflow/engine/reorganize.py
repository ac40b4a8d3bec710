"""Reorganisation on a date: merge, split, rename, dissolve, move and create units from a mapping file.

The mapping is a YAML list of operations (docs/registry.md). ``apply`` checks the whole file first
by running it inside a savepoint, each operation in a savepoint of its own, and collects every
problem named by its operation; with any problem, or on a dry run, the outer savepoint is rolled
back, so nothing changes. Otherwise it stays in the caller's transaction (the caller commits).

What moves, for the province's lead officer who has to make the books balance:

- successor links (``unit_successions``) with the date;
- a predecessor's open obligations, with their pending timers exactly as they were (same due date,
  escalation level and next step), onto the successor's lifecycle case, with a history row on both
  cases; same-name obligations landing on one case merge into the earliest due, the others close
  as ``merged``;
- open corrective actions (their unit and parent case re-pointed, history on both sides);
- then the predecessor's lifecycle case ends ``superseded`` (the ``supersede`` event, naming the
  successor); the successor gets one lifecycle case, in ``reannouncing`` if any predecessor had
  announced (its scope changed, docs/domain.md), otherwise in the definition's first state;
- a dissolved unit with no successor ends its cases ``withdrawn``; its children move to the parent
  the operation names.

Events are fired by the named actor with the system's role (``withdraw`` and ``change_scope`` allow
it from definition version 2); a running version-1 case that lacks such an event is migrated to the
newest version explicitly, with a ``definition_migrated`` history row, when the reorganisation needs it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from . import adminlog, calendar_store, history, timers
from .calendar import deadline_instant
from .cases import _enter_state, advance, load_case_for_update
from .clock import local_date
from .definitions import Role
from .errors import FieldProblem, NotFound, NotPermitted, QmsflowError, ValidationFailed
from .models import Case, Contact, Obligation, ReorganisationOperation, Timer, Unit, UnitParent, User
from .permissions import Actor
from .runtime import Runtime
from .units import UnitKind, change_unit, create_unit, end_unit, record_succession, set_parent, unit_by_code, version_on

LIFECYCLE = "qms_lifecycle"
CORRECTIVE = "corrective_action"
OPERATIONS = ("merge", "split", "rename", "change_kind", "change_code", "change", "dissolve", "move", "create", "move_users")
_COMMON = {"op", "id", "effective", "note"}
_KEYS: dict[str, set[str]] = {
    "merge": {"from", "into", "into_existing", "deadline"},
    "split": {"unit", "primary", "others", "deadline"},
    "rename": {"unit", "name"},
    "change_kind": {"unit", "kind", "name"},
    "change_code": {"unit", "code"},
    "change": {"unit", "name", "kind", "code"},
    "dissolve": {"unit", "children_to"},
    "move": {"unit", "parent"},
    "create": {"code", "name", "kind", "parent", "is_lead"},
    "move_users": {"users", "to"},
}


# ------------------------------------------------------------------------------------------ the file


def load_mapping(text: str) -> list[dict[str, Any]]:
    """Parse a mapping file's text into its list of operations; ValidationFailed names each problem."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        document = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise ValidationFailed([FieldProblem("file", "reorg_format", {"reason": f"not valid YAML: {exc}"})]) from None
    ops = document.get("operations") if isinstance(document, dict) else document
    if not isinstance(ops, list):
        raise ValidationFailed([FieldProblem("file", "reorg_format", {"reason": "a list of operations (or operations: [...]) is needed"})])
    return [dict(op) if isinstance(op, dict) else {"op": op} for op in ops]


def _plain(value: Any) -> Any:
    """Codes as text, dates as ISO text: the operation as it is hashed and stored."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _op_key(op: Mapping[str, Any]) -> str:
    if op.get("id"):
        return str(op["id"])
    into = op.get("into")
    target = (
        op.get("into_existing") or (into.get("code") if isinstance(into, Mapping) else None)
        or op.get("unit") or op.get("code") or op.get("to") or ""
    )
    return f"{op.get('op')}:{op.get('effective')}:{target}"


def _op_hash(op: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(op, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def _label(index: int, op: Mapping[str, Any]) -> str:
    return f"operation {index + 1} ({_op_key(op)})"


def _static_problems(index: int, op: dict[str, Any], today: date) -> list[FieldProblem]:
    """What can be said of one operation without the database: its shape, its date, a unit merged into itself."""
    label = _label(index, op)
    kind = op.get("op")
    if kind not in OPERATIONS:
        return [FieldProblem(label, "reorg_format", {"reason": f"op must be one of {', '.join(OPERATIONS)}"})]
    problems = []
    unknown = set(op) - _COMMON - _KEYS[kind]
    if unknown:
        problems.append(FieldProblem(label, "reorg_format", {"reason": f"unknown keys {sorted(unknown)}"}))
    try:
        effective = date.fromisoformat(str(op.get("effective")))
    except ValueError:
        problems.append(FieldProblem(label, "reorg_format", {"reason": "effective must be a date YYYY-MM-DD"}))
    else:
        if effective > today:
            problems.append(FieldProblem(label, "reorg_future", {"day": effective, "today": today}))
    required = {
        "merge": ["from"], "split": ["unit", "primary"], "rename": ["unit", "name"], "change_kind": ["unit", "kind"],
        "change_code": ["unit", "code"], "change": ["unit"], "dissolve": ["unit"], "move": ["unit", "parent"],
        "create": ["code", "name", "kind"], "move_users": ["users", "to"],
    }[kind]
    for key in required:
        if op.get(key) in (None, "", []):
            problems.append(FieldProblem(label, "reorg_format", {"reason": f"{key} is required"}))
    if op.get("deadline") is not None:
        try:
            deadline = date.fromisoformat(str(op["deadline"]))
        except ValueError:
            problems.append(FieldProblem(label, "reorg_format", {"reason": "deadline must be a date YYYY-MM-DD"}))
        else:
            if str(deadline) <= str(op.get("effective")):
                problems.append(FieldProblem(label, "reorg_format", {"reason": "the deadline must be after the effective date"}))
    for key in ("from", "others", "users"):
        if key in op and not isinstance(op[key], list):
            problems.append(FieldProblem(label, "reorg_format", {"reason": f"{key} must be a list"}))
    if kind == "merge":
        into, existing = op.get("into"), op.get("into_existing")
        if (into is None) == (existing is None):
            problems.append(FieldProblem(label, "reorg_format", {"reason": "a merge names into (a new unit) or into_existing"}))
        elif into is not None and not (isinstance(into, dict) and into.get("code") and into.get("name") and into.get("kind")):
            problems.append(FieldProblem(label, "reorg_format", {"reason": "into needs code, name and kind"}))
        elif existing is not None and str(existing) in op.get("from", []):
            problems.append(FieldProblem(label, "merged_into_itself", {"code": existing}))
    if kind == "split" and (str(op.get("primary")) == str(op.get("unit")) or str(op.get("unit")) in op.get("others", [])):
        problems.append(FieldProblem(label, "merged_into_itself", {"code": op.get("unit")}))
    into = op.get("into")
    for value in (op.get("kind"), into.get("kind") if isinstance(into, dict) else None):
        if value is not None and value not in {k.value for k in UnitKind}:
            problems.append(FieldProblem(label, "unknown_kind", {"value": repr(value), "choices": [k.value for k in UnitKind]}))
    return problems


# ---------------------------------------------------------------------------------------- the report


@dataclass
class OperationReport:
    """What one operation did (or, on a dry run, would do): one line per case that ends, opens or moves."""

    key: str
    op: str
    effective: date
    status: str  # applied | unchanged
    lines: list[str] = field(default_factory=list)


@dataclass
class SuccessorRow:
    """One successor in the reconciliation: the cases and obligations it inherited."""

    unit_id: int
    code: str
    name: str
    cases: list[int] = field(default_factory=list)
    obligations: int = 0
    corrective_actions: int = 0
    has_head: bool = False
    has_iso_officer: bool = False


@dataclass
class Report:
    """The result of ``apply``: per operation, and the reconciliation the lead officer checks."""

    dry_run: bool
    operations: list[OperationReport]
    successors: list[SuccessorRow]
    users_on_ended_units: list[tuple[str, str]]  # (username, unit code)
    contacts_on_ended_units: list[tuple[str, str, str]]  # (unit code, role, name)

    @property
    def without_contacts(self) -> list[SuccessorRow]:
        """Successors with no head or no ISO officer: escalations to ``unit_head`` would reach nobody."""
        return [s for s in self.successors if not (s.has_head and s.has_iso_officer)]

    def csv_rows(self) -> list[list[str]]:
        """The reconciliation as CSV rows (header first)."""
        rows = [["section", "unit_code", "unit_name", "detail"]]
        for s in self.successors:
            rows.append([
                "successor", s.code, s.name,
                f"cases={' '.join(map(str, s.cases))}; obligations={s.obligations}; corrective_actions={s.corrective_actions}",
            ])
        for username, code in self.users_on_ended_units:
            rows.append(["user_on_ended_unit", code, "", username])
        for code, role, name in self.contacts_on_ended_units:
            rows.append(["contact_on_ended_unit", code, "", f"{role}: {name}"])
        for s in self.without_contacts:
            missing = [r for r, has in (("head", s.has_head), ("iso_officer", s.has_iso_officer)) if not has]
            rows.append(["successor_without_contact", s.code, s.name, " ".join(missing)])
        return rows


class _Refused(Exception):
    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems


@dataclass
class _Run:
    session: Session
    rt: Runtime
    actor: Actor
    now: datetime
    key: str = ""
    label: str = ""
    report: OperationReport | None = None
    successors: dict[int, SuccessorRow] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)

    @property
    def system(self) -> Actor:
        return Actor(username=self.actor.username, role=Role.SYSTEM)

    def say(self, line: str) -> None:
        assert self.report is not None
        self.report.lines.append(line)

    def unit(self, code: Any, day: date) -> Unit:
        try:
            return unit_by_code(self.session, str(code), day)
        except NotFound:
            raise _Refused([FieldProblem(self.label, "no_code_on", {"code": str(code), "day": day})]) from None

    def successor(self, unit: Unit) -> SuccessorRow:
        row = self.successors.get(unit.id)
        if row is None:
            row = self.successors[unit.id] = SuccessorRow(unit.id, unit.code, unit.name)
        return row


# ----------------------------------------------------------------------------------------- apply


def apply(
    session: Session, rt: Runtime, actor: Actor, ops: list[dict[str, Any]], *, dry_run: bool = False
) -> Report:
    """Apply a reorganisation's operations in order, all or nothing; a dry run changes nothing.

    Raises ValidationFailed listing every problem, each named by its operation, and changes nothing then.
    """
    if actor.role not in (Role.LEAD, Role.ADMIN):
        raise NotPermitted(actor.username, "apply a reorganisation")
    now = rt.clock.now()
    today = local_date(now)
    ops = [_plain(op) for op in ops]  # codes written as numbers in YAML are codes all the same
    static = [_static_problems(i, op, today) for i, op in enumerate(ops)]
    problems: list[FieldProblem] = []
    run = _Run(session, rt, actor, now)
    reports: list[OperationReport] = []
    outer = session.begin_nested()
    try:
        for index, op in enumerate(ops):
            if static[index]:  # the later operations are still tried, so every problem is listed at once
                problems.extend(static[index])
                continue
            run.key, run.label = _op_key(op), _label(index, op)
            effective = date.fromisoformat(op["effective"])
            run.report = OperationReport(run.key, op["op"], effective, "applied")
            try:
                with session.begin_nested():
                    if _already_applied(run, op):
                        run.report.status = "unchanged"
                    else:
                        _DO[op["op"]](run, op, effective)
                        session.add(ReorganisationOperation(
                            op_key=run.key, op_hash=_op_hash(op), operation=op, effective=effective,
                            applied_at=now, actor=actor.username, backdated=effective < today,
                        ))
                        session.flush()
            except _Refused as exc:
                problems.extend(exc.problems)
            except ValidationFailed as exc:
                problems.extend(FieldProblem(f"{run.label}: {p.field}", p.code, p.params) for p in exc.problems)
            except (QmsflowError, SQLAlchemyError) as exc:
                problems.append(FieldProblem(run.label, "reorg_conflict", {"reason": str(exc).splitlines()[0][:300]}))
            reports.append(run.report)
        report = _reconcile(run, reports, dry_run)
    except BaseException:
        outer.rollback()
        session.expire_all()
        raise
    if problems or dry_run:
        outer.rollback()
        session.expire_all()
        if problems:
            raise ValidationFailed(problems)
        return report
    outer.commit()
    return report


def _already_applied(run: _Run, op: dict[str, Any]) -> bool:
    stored = run.session.scalar(select(ReorganisationOperation).where(ReorganisationOperation.op_key == run.key))
    if stored is None:
        return False
    if stored.op_hash == _op_hash(op):
        return True
    before = stored.operation
    difference = "; ".join(
        f"{k}: {json.dumps(before.get(k), ensure_ascii=False)} -> {json.dumps(op.get(k), ensure_ascii=False)}"
        for k in sorted(set(before) | set(op)) if before.get(k) != op.get(k)
    )
    raise _Refused([FieldProblem(run.label, "reorg_changed", {
        "key": run.key, "applied": local_date(stored.applied_at), "difference": difference,
    })])


def _reconcile(run: _Run, reports: list[OperationReport], dry_run: bool) -> Report:
    session = run.session
    for row in run.successors.values():
        roles = set(session.scalars(select(Contact.role).where(Contact.unit_id == row.unit_id)))
        row.has_head, row.has_iso_officer = "head" in roles, "iso_officer" in roles
    users: list[tuple[str, str]] = []
    contacts: list[tuple[str, str, str]] = []
    if run.ended:
        for user in session.scalars(select(User).where(User.unit_id.in_(run.ended), User.active.is_(True)).order_by(User.username)):
            unit = session.get(Unit, user.unit_id)
            users.append((user.username, unit.code if unit else ""))
        for contact in session.scalars(select(Contact).where(Contact.unit_id.in_(run.ended)).order_by(Contact.unit_id, Contact.role)):
            contacts.append((contact.unit.code, contact.role, contact.name))
    return Report(dry_run, reports, sorted(run.successors.values(), key=lambda r: r.code), users, contacts)


# ------------------------------------------------------------------------------------ operations


def _merge(run: _Run, op: dict[str, Any], on: date) -> None:
    day_before = on - timedelta(days=1)
    predecessors = [run.unit(code, day_before) for code in op["from"]]
    if op.get("into_existing") is not None:
        successor = run.unit(op["into_existing"], day_before)
        if not successor.valid_on(on):
            raise _Refused([FieldProblem(run.label, "no_code_on", {"code": op["into_existing"], "day": on})])
        if successor.id in {p.id for p in predecessors}:
            raise _Refused([FieldProblem(run.label, "merged_into_itself", {"code": op["into_existing"]})])
    else:
        successor = None
    announced = any(_announced(run.session, p.id) for p in predecessors)
    for unit in predecessors:
        end_unit(run.session, run.rt, run.actor, unit.id, on=on)
        run.ended.add(unit.id)
    if successor is None:
        into = op["into"]
        parent = run.unit(into["parent"], on) if into.get("parent") else None
        successor = create_unit(
            run.session, code=into["code"], name=into["name"], kind=into["kind"], valid_from=on, parent=parent,
            rt=run.rt, actor=run.actor,
        )
        run.say(f"unit {successor.code} {successor.name} created from {on}")
    for unit in predecessors:
        record_succession(run.session, run.rt, run.actor, unit.id, successor.id, on=on)
    target = _successor_case(run, successor, announced, on, [p.code for p in predecessors],
                             survivor=op.get("into_existing") is not None, deadline=op.get("deadline"))
    for unit in predecessors:
        _hand_over(run, unit, successor, target, on, others=[])
    _merge_obligations(run, target)


def _split(run: _Run, op: dict[str, Any], on: date) -> None:
    day_before = on - timedelta(days=1)
    unit = run.unit(op["unit"], day_before)
    primary = run.unit(op["primary"], on)
    others = [run.unit(code, on) for code in op.get("others", [])]
    if unit.id in {primary.id, *(o.id for o in others)}:
        raise _Refused([FieldProblem(run.label, "merged_into_itself", {"code": op["unit"]})])
    announced = _announced(run.session, unit.id)
    if unit.valid_on(on):
        end_unit(run.session, run.rt, run.actor, unit.id, on=on)
    run.ended.add(unit.id)
    for successor in (primary, *others):
        record_succession(run.session, run.rt, run.actor, unit.id, successor.id, on=on)
    target = _successor_case(run, primary, announced, on, [unit.code], survivor=True, deadline=op.get("deadline"))
    _hand_over(run, unit, primary, target, on, others=[o.code for o in others])
    _merge_obligations(run, target)


def _change(run: _Run, op: dict[str, Any], on: date) -> None:
    unit = run.unit(op["unit"], on)
    before = version_on(run.session, unit.id, on)
    change_unit(run.session, run.rt, run.actor, unit.id, on=on, name=op.get("name"), kind=op.get("kind"), code=op.get("code"))
    after = version_on(run.session, unit.id, on)
    if before is not None and after is not None:
        run.say(f"unit {before.code} {before.name} ({before.kind}) is {after.code} {after.name} ({after.kind}) from {on}; its cases stay its own")


def _move(run: _Run, op: dict[str, Any], on: date) -> None:
    unit = run.unit(op["unit"], on)
    parent = run.unit(op["parent"], on)
    current = run.session.scalar(
        select(UnitParent.parent_id).where(
            UnitParent.unit_id == unit.id, UnitParent.valid_from <= on,
            (UnitParent.valid_to.is_(None)) | (UnitParent.valid_to > on),
        )
    )
    if current == parent.id:
        return
    set_parent(run.session, unit, parent, on, rt=run.rt, actor=run.actor)
    run.say(f"unit {unit.code} {unit.name} moves under {parent.code} {parent.name}; its cases and timers stay as they are")


def _create(run: _Run, op: dict[str, Any], on: date) -> None:
    parent = run.unit(op["parent"], on) if op.get("parent") else None
    unit = create_unit(
        run.session, code=op["code"], name=op["name"], kind=op["kind"], valid_from=on, parent=parent,
        is_lead=bool(op.get("is_lead")), rt=run.rt, actor=run.actor,
    )
    run.say(f"unit {unit.code} {unit.name} created from {on}")


def _dissolve(run: _Run, op: dict[str, Any], on: date) -> None:
    day_before = on - timedelta(days=1)
    unit = run.unit(op["unit"], day_before)
    children = list(run.session.scalars(
        select(Unit).join(UnitParent, UnitParent.unit_id == Unit.id).where(
            UnitParent.parent_id == unit.id, UnitParent.valid_from <= day_before,
            (UnitParent.valid_to.is_(None)) | (UnitParent.valid_to > on), Unit.valid_from <= on,
            (Unit.valid_to.is_(None)) | (Unit.valid_to > on),
        )
    ))
    if children:
        if not op.get("children_to"):
            raise _Refused([FieldProblem(run.label, "reorg_format", {
                "reason": f"{unit.code} still has {len(children)} units under it on {on}: children_to is required",
            })])
        parent = run.unit(op["children_to"], on)
        for child in children:
            set_parent(run.session, child, parent, on, rt=run.rt, actor=run.actor)
            run.say(f"unit {child.code} {child.name} moves under {parent.code}")
    reason = f"{unit.code} {unit.name} dissolved on {on} with no successor ({run.key})"
    for case in _open_cases(run.session, unit.id):
        _fire(run, case, "withdraw", {"reason": reason})
        run.say(f"case {case.id} ({case.workflow}) of {unit.code} ends withdrawn")
    if unit.valid_on(on):
        end_unit(run.session, run.rt, run.actor, unit.id, on=on)
    run.ended.add(unit.id)


def _move_users(run: _Run, op: dict[str, Any], on: date) -> None:
    unit = run.unit(op["to"], on)
    for username in op["users"]:
        user = run.session.scalar(select(User).where(User.username == str(username)))
        if user is None:
            raise _Refused([FieldProblem(run.label, "reorg_format", {"reason": f"no user {username}"})])
        before = {"unit_id": user.unit_id}
        user.unit_id = unit.id
        adminlog.record(
            run.session, run.rt.history_key, run.actor, at=run.now, action="user.move", object_kind="user",
            object_id=user.id, before=before, after={"unit_id": unit.id, "effective": on.isoformat(), "reorganisation": run.key},
        )
        run.say(f"user {user.username} moves to {unit.code} {unit.name}")
    run.session.flush()


_DO = {
    "merge": _merge, "split": _split, "rename": _change, "change_kind": _change, "change_code": _change,
    "change": _change, "dissolve": _dissolve, "move": _move, "create": _create, "move_users": _move_users,
}


# ---------------------------------------------------------------------------------- cases moving


def _open_cases(session: Session, unit_id: int, workflow: str | None = None) -> list[Case]:
    query = select(Case).where(Case.unit_id == unit_id, Case.closed_at.is_(None)).order_by(Case.id)
    if workflow is not None:
        query = query.where(Case.workflow == workflow)
    return list(session.scalars(query))


def _announced(session: Session, unit_id: int) -> bool:
    """Whether any lifecycle case of the unit, open or closed, recorded an announcement."""
    return any(
        (c.data or {}).get("announced_on") for c in session.scalars(select(Case).where(Case.unit_id == unit_id, Case.workflow == LIFECYCLE))
    )


def _successor_case(
    run: _Run, unit: Unit, announced: bool, on: date, predecessors: list[str], *, survivor: bool, deadline: str | None = None
) -> Case:
    """The successor's one open lifecycle case: its own (recording the scope change) or a new one.

    ``deadline`` (from the mapping) sets a new case's first deadline instead of the definition's length;
    its reminders and escalation ladder are planned around it as usual.
    """
    row = run.successor(unit)
    existing = _open_cases(run.session, unit.id, LIFECYCLE)
    scope = f"merged with {', '.join(predecessors)} on {on} ({run.key})"
    if existing:
        case = existing[0]
        if survivor and case.state == "maintaining":
            _fire(run, case, "change_scope", {"scope_change": scope, "scope_changed_on": on.isoformat()})
        else:
            locked = load_case_for_update(run.session, case.id)
            history.append(
                run.session, run.rt.history_key, locked, at=run.now, kind="scope_changed", actor=run.actor.username,
                data={"predecessors": predecessors, "effective": on.isoformat(), "reorganisation": run.key},
            )
        run.say(f"case {case.id} of {unit.code} records the scope change ({case.state})")
        return case
    definition = run.rt.registry.latest(LIFECYCLE)
    state = "reannouncing" if announced else definition.spec.initial
    data: dict[str, Any] = {"reorganised_on": on.isoformat(), "predecessors": predecessors}
    if announced:
        data.update({"scope_changed": True, "scope_changed_on": on.isoformat(), "scope_change": scope})
    starts = timers.resolve_starts(definition, state, None, data, data, on, None)
    if starts:
        calendar_store.check(run.session, run.rt.calendar, planning=True)
    case = Case(
        unit_id=unit.id, workflow=definition.name, workflow_version=definition.version, state=state, version=1,
        data=data, opened_at=run.now, updated_at=run.now, history_head="", history_length=0,
        open_key=definition.open_key(data),
    )
    run.session.add(case)
    run.session.flush()
    history.append(
        run.session, run.rt.history_key, case, at=run.now, kind="opened", actor=run.actor.username, to_state=state,
        data={"workflow": definition.name, "version": definition.version, "unit": unit.code, "unit_id": unit.id,
              "reorganisation": run.key, **data},
    )
    _enter_state(run.session, run.rt, definition, case, run.now, run.system, starts)
    run.session.flush()
    if deadline is not None:
        _set_deadline(run, definition, case, date.fromisoformat(deadline))
    row.cases.append(case.id)
    run.say(f"case {case.id} opens for {unit.code} {unit.name} in {state}")
    return case


def _set_deadline(run: _Run, definition: Any, case: Case, due: date) -> None:
    """Re-plan the new case's state timers to fall due on ``due``: the same steps, around another due date."""
    for timer in run.session.scalars(select(Timer).where(Timer.case_id == case.id, Timer.status == "pending", Timer.kind == "state")):
        key = timers.timer_key(timer)
        steps = timers.plan_steps(definition.timer_spec(key), definition.ladder(key), timer.start_date, due, run.rt.calendar)
        first = timers.first_step(steps, timer.start_date)
        timer.due_date, timer.due_at = due, deadline_instant(due)
        timer.next_step, timer.next_at = first, steps[first].at
        run.say(f"case {case.id}: {timer.name} due on {due} (set by the mapping)")
    run.session.flush()


def _pending_timer(session: Session, ob: Obligation) -> Timer | None:
    return session.scalar(select(Timer).where(Timer.obligation_id == ob.id, Timer.status == "pending").order_by(Timer.id).limit(1))


def _hand_over(run: _Run, unit: Unit, successor: Unit, target: Case, on: date, *, others: list[str]) -> None:
    """Move the unit's open obligations and corrective actions to ``target``, then end its lifecycle cases."""
    session = run.session
    row = run.successor(successor)
    lifecycle = _open_cases(session, unit.id, LIFECYCLE)
    for case in lifecycle:
        source = load_case_for_update(session, case.id)
        tgt = load_case_for_update(session, target.id)
        for ob in list(session.scalars(select(Obligation).where(Obligation.case_id == source.id, Obligation.status == "open").order_by(Obligation.id))):
            pending = list(session.scalars(select(Timer).where(Timer.obligation_id == ob.id, Timer.status == "pending")))
            ob.case_id = tgt.id
            for timer in pending:
                timer.case_id = tgt.id
            session.flush()
            first = pending[0] if pending else None
            facts = {
                "obligation": ob.name, "cycle": ob.cycle, "obligation_id": ob.id,
                "due": first.due_date.isoformat() if first else None, "level": first.level if first else None,
                "next_step": first.next_step if first else None, "effective": on.isoformat(), "reorganisation": run.key,
            }
            history.append(session, run.rt.history_key, source, at=run.now, kind="obligation_moved_out", actor=run.actor.username,
                           data={**facts, "to_case": tgt.id, "to_unit": successor.code})
            history.append(session, run.rt.history_key, tgt, at=run.now, kind="obligation_moved_in", actor=run.actor.username,
                           data={**facts, "from_case": source.id, "from_unit": unit.code})
            row.obligations += 1
            run.say(f"obligation {ob.name} (cycle {ob.cycle}) of case {source.id} moves to case {tgt.id}, due {facts['due']}, level {facts['level']}")
    for ca in _open_cases(session, unit.id, CORRECTIVE):
        locked = load_case_for_update(session, ca.id)
        old_parent = locked.parent_case_id
        history.append(
            session, run.rt.history_key, locked, at=run.now, kind="unit_moved", actor=run.actor.username,
            data={"from_unit_id": unit.id, "to_unit_id": successor.id, "from_unit": unit.code, "to_unit": successor.code,
                  "from_parent_case": old_parent, "to_parent_case": target.id, "effective": on.isoformat(), "reorganisation": run.key},
            case_values={"unit_id": successor.id, "parent_case_id": target.id},
        )
        for side, kind in ((old_parent, "corrective_action_moved_out"), (target.id, "corrective_action_moved_in")):
            if side is None:
                continue
            holder = load_case_for_update(session, side)
            history.append(session, run.rt.history_key, holder, at=run.now, kind=kind, actor=run.actor.username,
                           data={"corrective_action": ca.id, "from_unit": unit.code, "to_unit": successor.code, "reorganisation": run.key})
        row.corrective_actions += 1
        run.say(f"case {ca.id} (corrective_action) moves from {unit.code} to {successor.code}, under case {target.id}")
    for case in lifecycle:
        data: dict[str, Any] = {"successor_unit": successor.code, "reorganised_on": on.isoformat()}
        _fire(run, case, "supersede", data)
        if others:
            locked = load_case_for_update(session, case.id)
            history.append(session, run.rt.history_key, locked, at=run.now, kind="split_successors", actor=run.actor.username,
                           data={"primary": successor.code, "others": others, "reorganisation": run.key})
        row.cases.append(case.id)
        run.say(f"case {case.id} of {unit.code} ends superseded by {successor.code}" + (f" (also: {', '.join(others)})" if others else ""))


def _merge_obligations(run: _Run, target: Case) -> None:
    """Same-name open obligations on one case: the earliest due stays, the others close as ``merged``."""
    session = run.session
    groups: dict[str, list[tuple[date, int, Obligation, Timer | None]]] = {}
    for ob in session.scalars(select(Obligation).where(Obligation.case_id == target.id, Obligation.status == "open")):
        timer = _pending_timer(session, ob)
        groups.setdefault(ob.name, []).append((timer.due_date if timer else date.max, ob.id, ob, timer))
    for name, group in groups.items():
        if len(group) < 2:
            continue
        group.sort(key=lambda g: (g[0], g[1]))
        kept = group[0][2]
        for _, _, ob, timer in group[1:]:
            ob.status, ob.closed_at = "merged", run.now
            session.flush()
            timers.cancel(session, list(session.scalars(select(Timer).where(Timer.obligation_id == ob.id, Timer.status == "pending"))), run.now)
            locked = load_case_for_update(session, target.id)
            history.append(session, run.rt.history_key, locked, at=run.now, kind="obligation_merged", actor=run.actor.username,
                           data={"obligation": name, "obligation_id": ob.id, "into_obligation_id": kept.id,
                                 "due": timer.due_date.isoformat() if timer else None, "reorganisation": run.key})
            run.say(f"obligation {name} {ob.id} merges into {kept.id} (the earliest due) on case {target.id}")


def _fire(run: _Run, case: Case, event: str, data: dict[str, Any]) -> None:
    """Fire ``event`` as the named actor with the system's role, migrating the case to a version that allows it."""
    definition = run.rt.registry.get(case.workflow, case.workflow_version)
    if not _allows(definition, case.state, event):
        latest = run.rt.registry.latest(case.workflow)
        if latest.version == definition.version or not _allows(latest, case.state, event):
            raise _Refused([FieldProblem(run.label, "reorg_conflict", {
                "reason": f"case {case.id} ({case.workflow} v{case.workflow_version}, {case.state}) cannot {event}",
            })])
        locked = load_case_for_update(run.session, case.id)
        history.append(
            run.session, run.rt.history_key, locked, at=run.now, kind="definition_migrated", actor=run.actor.username,
            data={"from_version": definition.version, "to_version": latest.version, "needed_for": event, "reorganisation": run.key},
            case_values={"workflow_version": latest.version},
        )
    advance(run.session, run.rt, run.system, case.id, event, data, now=run.now, comment=f"reorganisation {run.key}")


def _allows(definition: Any, state: str, event: str) -> bool:
    spec = definition.spec.events.get(event)
    return spec is not None and Role.SYSTEM in spec.roles and state in definition.sources(event) and state in definition.spec.states


__all__ = ["OperationReport", "Report", "SuccessorRow", "apply", "load_mapping"]
