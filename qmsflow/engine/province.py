"""Where the province stands, as of the end of any day: one per-unit status query, counted and listed.

``unit_status`` is one SELECT with a row for every unit that existed on the day and is in the
reader's scope that day (``permissions.visible_units``), each with what held at the end of that day
in Asia/Ho_Chi_Minh, read from the history rather than from today's rows:

- ``stage``: the ``to_state`` of the last history row before then of the unit's lifecycle case
  (the last one opened by then); ``none`` when it had none;
- ``late``: a timer open then (created before, not closed by then) whose due date *as planned
  then* had passed (the ``from`` of the first ``deadline_moved`` row after then, else its due date),
  counted against the unit as qmsflow/engine/lateness.py counts it (a review waiting on the lead
  is the lead's lateness);
- ``rank``: the highest escalation rank (lateness.TARGET_RANK) fired before then on a timer open then;
- ``open_ca``: a corrective action open then; ``ever_announced``: an ``announce`` before then on a
  lifecycle case of the unit or of a predecessor it had taken over from by then (unit_successions);
- its name, code and kind of that day (``unit_versions``) and its parent of that day (``unit_parents``).

The dashboard's figures (``province_summary``) are ``COUNT``/``GROUP BY`` over that SELECT and the
units list (``list_units``) is a ``WHERE`` over the same SELECT with ``conditions(filter)``: every
figure carries the filter whose list it counts, so the two cannot disagree.

Access path: per unit, the correlated subqueries walk ``cases.ix_cases_unit_id``, the history's
unique ``(case_id, seq)`` index backwards, ``timers.ix_timers_case_status`` and ``timer_firings``'
unique ``(timer_id, step)``; no derived table is kept, so every day of the past reads alike. The
dashboard's totals read the status from a ``MATERIALIZED`` CTE (each unit's subqueries run once, not
once per figure that reads them) and its announcements by month walk ``ix_history_event_at``
(migration 0017). On PostgreSQL the engine turns JIT off (qmsflow/engine/db.py): compiling this
statement cost more than running it. bench/province_pages.py prints the plans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, case, cast, exists, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from .calendar import deadline_instant
from .clock import LOCAL_TZ, local_date
from .errors import FieldProblem, ValidationFailed
from .lateness import ESCALATED_RANK, TARGET_RANK, Party, escalation_rank, timers_of_party
from .models import Case, HistoryEntry, Timer, TimerFiring, Unit, UnitParent, UnitSuccession, UnitVersion
from .permissions import Actor, visible_units
from .runtime import Runtime
from .unitsearch import matches

LIFECYCLE = "qms_lifecycle"
CORRECTIVE = "corrective_action"
ANNOUNCE = "announce"
NO_STAGE = "none"
STAGES = ["none", "planned", "building", "applying", "announced", "maintaining", "reannouncing", "superseded", "withdrawn"]
PAGE_SIZE = 50
SORTS = {"name", "code", "stage", "kind", "-name", "-code"}
FLAG_FILTERS = ("late", "escalated", "open_ca", "ever_announced")
MAX_DUE_WITHIN = 366


@dataclass(frozen=True)
class UnitFilter:
    """The units list's parameters (the URL contract in docs/web.md); ``as_of`` None means today."""

    q: str = ""
    kind: str | None = None
    parent: int | None = None
    stage: str | None = None
    late: bool = False
    escalated: bool = False
    level: int | None = None
    open_ca: bool = False
    ever_announced: bool = False
    announced: str | None = None  # YYYY-MM
    due_within: int | None = None
    as_of: date | None = None
    sort: str = "name"
    page: int = 1

    def params(self) -> dict[str, str]:
        """The filter as URL parameters (only those set), the form the units list and exports read."""
        out: dict[str, str] = {}
        if self.q:
            out["q"] = self.q
        for name in ("kind", "parent", "stage", "level", "announced", "due_within"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        for name in FLAG_FILTERS:
            if getattr(self, name):
                out[name] = "1"
        if self.as_of is not None:
            out["as_of"] = self.as_of.isoformat()
        return out

    @classmethod
    def parse(cls, raw: Mapping[str, str]) -> UnitFilter:
        """Read a filter from request parameters; raise ValidationFailed naming every bad one."""
        problems: list[FieldProblem] = []
        values: dict[str, Any] = {}

        def whole(name: str, low: int, high: int) -> int | None:
            text = (raw.get(name) or "").strip()
            if not text:
                return None
            if not text.isdigit() or not low <= int(text) <= high:
                problems.append(FieldProblem(name, "integer_range", {"low": low, "high": high}))
                return None
            return int(text)

        q = (raw.get("q") or "").strip()
        if len(q) > 100:
            problems.append(FieldProblem("q", "max_length", {"n": 100}))
        values["q"] = q[:100]
        kind = (raw.get("kind") or "").strip() or None
        if kind is not None:
            from .units import UnitKind

            if kind not in {k.value for k in UnitKind}:
                problems.append(FieldProblem("kind", "one_of", {"choices": [k.value for k in UnitKind]}))
                kind = None
        values["kind"] = kind
        stage = (raw.get("stage") or "").strip() or None
        if stage is not None and stage not in STAGES:
            problems.append(FieldProblem("stage", "one_of", {"choices": STAGES}))
            stage = None
        values["stage"] = stage
        values["parent"] = whole("parent", 1, 2**31 - 1)
        values["level"] = whole("level", 1, max(TARGET_RANK.values()))
        values["due_within"] = whole("due_within", 0, MAX_DUE_WITHIN)
        values["page"] = whole("page", 1, 100_000) or 1
        for name in FLAG_FILTERS:
            flag = (raw.get(name) or "").strip()
            if flag not in ("", "0", "1"):
                problems.append(FieldProblem(name, "one_of", {"choices": ["0", "1"]}))
            values[name] = flag == "1"
        announced = (raw.get("announced") or "").strip() or None
        if announced is not None:
            try:
                datetime.strptime(announced, "%Y-%m")
                if len(announced) != 7:
                    raise ValueError(announced)
            except ValueError:
                problems.append(FieldProblem("announced", "not_a_date"))
                announced = None
        values["announced"] = announced
        as_of = (raw.get("as_of") or "").strip() or None
        values["as_of"] = None
        if as_of is not None:
            try:
                values["as_of"] = date.fromisoformat(as_of) if len(as_of) == 10 else None
                if values["as_of"] is None:
                    raise ValueError(as_of)
            except ValueError:
                problems.append(FieldProblem("as_of", "not_a_date"))
        sort = (raw.get("sort") or "name").strip()
        if sort not in SORTS:
            problems.append(FieldProblem("sort", "one_of", {"choices": sorted(SORTS)}))
            sort = "name"
        values["sort"] = sort
        unknown = sorted(set(raw) - {*cls.__dataclass_fields__})
        problems.extend(FieldProblem(name, "unknown_filter") for name in unknown)
        if problems:
            raise ValidationFailed(problems)
        return cls(**values)


def end_of_day(on: date) -> datetime:
    """The instant the day ``on`` ends in Asia/Ho_Chi_Minh (00:00 there the next day), in UTC."""
    return deadline_instant(on)


def _month_start(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=LOCAL_TZ).astimezone(UTC)


def _month_range(month: str) -> tuple[datetime, datetime]:
    year, number = int(month[:4]), int(month[5:7])
    after = (year + 1, 1) if number == 12 else (year, number + 1)
    return _month_start(year, number), _month_start(*after)


def _valid_on(model: Any, on: date) -> ColumnElement[bool]:
    return and_(model.valid_from <= on, or_(model.valid_to.is_(None), model.valid_to > on))


def _open_then(until: datetime) -> ColumnElement[bool]:
    """SQL over Timer: the timer was open at ``until`` (created before it, not closed by it)."""
    return and_(Timer.created_at < until, or_(Timer.closed_at.is_(None), Timer.closed_at >= until))


def _due_then(until: datetime) -> ColumnElement[str]:
    """SQL over Timer: its due date as planned at ``until``, as ISO text (a later move is undone)."""
    moved = aliased(HistoryEntry)
    first_move = (
        select(moved.data["from"].as_string())
        .where(
            moved.case_id == Timer.case_id, moved.kind == "deadline_moved", moved.at >= until,
            moved.at >= Timer.created_at, moved.data["timer"].as_string() == Timer.name,
        )
        .order_by(moved.seq)
        .limit(1)
        .correlate(Timer)
        .scalar_subquery()
    )
    return func.coalesce(first_move, cast(Timer.due_date, String))


@dataclass(frozen=True)
class _Context:
    on: date
    until: datetime
    status: Any  # the subquery


def _lineage(on: date) -> Any:
    """A CTE (unit_id, member): each unit and every predecessor it had taken over from by ``on``."""
    tree = select(Unit.id.label("unit_id"), Unit.id.label("member")).cte("lineage", recursive=True)
    step = select(tree.c.unit_id, UnitSuccession.predecessor_id).join(
        UnitSuccession, UnitSuccession.successor_id == tree.c.member
    ).where(UnitSuccession.effective <= on)
    return tree.union(step)


def status_select(rt: Runtime, actor: Actor, on: date) -> Select[Any]:
    """The per-unit status SELECT as of the end of ``on`` (see the module's docstring)."""
    until = end_of_day(on)
    version = UnitVersion
    unit_id = version.unit_id
    lifecycle_case = (
        select(Case.id)
        .where(Case.unit_id == unit_id, Case.workflow == LIFECYCLE, Case.opened_at < until)
        .order_by(Case.opened_at.desc(), Case.id.desc())
        .limit(1)
        .correlate(version)
        .scalar_subquery()
    )
    stage = (
        select(HistoryEntry.to_state)
        .where(HistoryEntry.case_id == lifecycle_case, HistoryEntry.to_state.is_not(None), HistoryEntry.at < until)
        .order_by(HistoryEntry.seq.desc())
        .limit(1)
        .correlate(version)
        .scalar_subquery()
    )
    unit_timer = and_(Timer.case_id == Case.id, Case.unit_id == unit_id, _open_then(until))
    late = exists().where(
        unit_timer, _due_then(until) <= on.isoformat(), timers_of_party(rt.registry, Party.UNIT)
    ).correlate(version)
    fired_level = (
        select(func.max(TimerFiring.level))
        .where(
            TimerFiring.timer_id == Timer.id, TimerFiring.kind == "escalation", TimerFiring.outcome == "fired",
            TimerFiring.fired_at < until,
        )
        .correlate(Timer)
        .scalar_subquery()
    )
    rank = func.coalesce(
        select(func.max(escalation_rank(rt.registry, fired_level))).where(unit_timer).correlate(version).scalar_subquery(), 0
    )
    open_ca = exists().where(
        Case.unit_id == unit_id, Case.workflow == CORRECTIVE, Case.opened_at < until,
        or_(Case.closed_at.is_(None), Case.closed_at >= until),
    ).correlate(version)
    lineage = _lineage(on)
    ever_announced = exists().where(
        lineage.c.unit_id == unit_id, Case.unit_id == lineage.c.member, Case.workflow == LIFECYCLE,
        HistoryEntry.case_id == Case.id, HistoryEntry.kind == "transition", HistoryEntry.event == ANNOUNCE,
        HistoryEntry.at < until,
    ).correlate(version)
    parent = select(UnitParent.parent_id).where(UnitParent.unit_id == unit_id, _valid_on(UnitParent, on)).limit(1)
    scope = visible_units(actor, on)
    return (
        select(
            unit_id.label("unit_id"), version.id.label("version_id"), version.code.label("code"),
            version.name.label("name"), version.kind.label("kind"),
            parent.correlate(version).scalar_subquery().label("parent_id"),
            func.coalesce(stage, NO_STAGE).label("stage"),
            case((late, 1), else_=0).label("late"), rank.label("rank"),
            case((open_ca, 1), else_=0).label("open_ca"), case((ever_announced, 1), else_=0).label("ever_announced"),
        )
        .where(_valid_on(version, on), scope.covers(unit_id))
    )


def _status(rt: Runtime, actor: Actor, on: date) -> _Context:
    return _Context(on, end_of_day(on), status_select(rt, actor, on).subquery("unit_status"))


def conditions(ctx: _Context, f: UnitFilter) -> list[ColumnElement[bool]]:
    """SQL over the status subquery: the units ``f`` selects (the same conditions count and list)."""
    s = ctx.status
    out: list[ColumnElement[bool]] = []
    if f.q:
        out.append(matches(f.q, s.c.version_id))
    if f.kind:
        out.append(s.c.kind == f.kind)
    if f.parent is not None:
        out.append(s.c.parent_id == f.parent)
    if f.stage:
        out.append(s.c.stage == f.stage)
    if f.late:
        out.append(s.c.late == 1)
    if f.escalated:
        out.append(s.c.rank >= ESCALATED_RANK)
    if f.level is not None:
        out.append(s.c.rank >= f.level)
    if f.open_ca:
        out.append(s.c.open_ca == 1)
    if f.ever_announced:
        out.append(s.c.ever_announced == 1)
    if f.announced:
        start, end = _month_range(f.announced)
        out.append(exists().where(
            Case.unit_id == s.c.unit_id, Case.workflow == LIFECYCLE, HistoryEntry.case_id == Case.id,
            HistoryEntry.kind == "transition", HistoryEntry.event == ANNOUNCE,
            HistoryEntry.at >= start, HistoryEntry.at < min(end, ctx.until),
        ))
    if f.due_within is not None:
        due = _due_then(ctx.until)
        out.append(exists().where(
            Timer.case_id == Case.id, Case.unit_id == s.c.unit_id, _open_then(ctx.until),
            due > ctx.on.isoformat(), due <= (ctx.on + timedelta(days=f.due_within)).isoformat(),
        ))
    return out


@dataclass(frozen=True)
class UnitRow:
    """One unit of the list as of the day."""

    unit_id: int
    code: str
    name: str
    kind: str
    parent_id: int | None
    parent_name: str | None
    stage: str
    late: bool
    rank: int
    open_ca: bool
    ever_announced: bool


@dataclass(frozen=True)
class UnitPage:
    """A page of the units list, with the total the filter selects."""

    filter: UnitFilter
    as_of: date
    total: int
    page: int
    pages: int
    rows: list[UnitRow]


_ORDER = {"name": "name", "-name": "name", "code": "code", "-code": "code", "stage": "stage", "kind": "kind"}


def _rows_select(ctx: _Context, f: UnitFilter) -> Select[Any]:
    s = ctx.status
    parent_version = aliased(UnitVersion)
    column = s.c[_ORDER[f.sort]]
    order = column.desc() if f.sort.startswith("-") else column
    return (
        select(s, parent_version.name.label("parent_name"))
        .outerjoin(parent_version, and_(parent_version.unit_id == s.c.parent_id, _valid_on(parent_version, ctx.on)))
        .where(*conditions(ctx, f))
        .order_by(order, s.c.unit_id)
    )


def _row(r: Any) -> UnitRow:
    return UnitRow(
        r.unit_id, r.code, r.name, r.kind, r.parent_id, r.parent_name, r.stage, bool(r.late), int(r.rank),
        bool(r.open_ca), bool(r.ever_announced),
    )


def _day(rt: Runtime, f: UnitFilter) -> date:
    return f.as_of if f.as_of is not None else local_date(rt.clock.now())


def list_units(session: Session, rt: Runtime, actor: Actor, f: UnitFilter, *, page_size: int = PAGE_SIZE) -> UnitPage:
    """The page ``f.page`` of the units ``f`` selects as of ``f.as_of`` (today when None), in the actor's scope."""
    on = _day(rt, f)
    ctx = _status(rt, actor, on)
    total = session.scalar(select(func.count()).select_from(ctx.status).where(*conditions(ctx, f))) or 0
    pages = max(1, -(-total // page_size))
    if f.page > pages:
        raise ValidationFailed([FieldProblem("page", "page_out_of_range")])
    query = _rows_select(ctx, f).limit(page_size).offset((f.page - 1) * page_size)
    return UnitPage(f, on, total, f.page, pages, [_row(r) for r in session.execute(query)])


def iter_units(session: Session, rt: Runtime, actor: Actor, f: UnitFilter, *, batch: int = 500) -> Any:
    """Yield every unit ``f`` selects (all pages), for the exports; the rows are streamed from one statement."""
    ctx = _status(rt, actor, _day(rt, f))
    result = session.execute(_rows_select(ctx, f).execution_options(yield_per=batch))
    for r in result:
        yield _row(r)


@dataclass(frozen=True)
class Figure:
    """One number of the dashboard and the units-list filter (URL parameters) that lists what it counts."""

    key: str
    count: int
    filter: dict[str, str]


@dataclass(frozen=True)
class Summary:
    """The province (the actor's scope) as it stood at the end of ``as_of``."""

    as_of: date
    units: Figure
    by_stage: list[Figure]
    ever_announced: Figure
    late: Figure
    escalation_levels: list[Figure]  # key: the rank (2 supervisor, 3 lead, 4 provincial PC), "at least"
    open_ca: Figure
    by_kind: dict[str, list[Figure]] = field(default_factory=dict)  # kind -> figures by stage
    by_parent: dict[int, list[Figure]] = field(default_factory=dict)  # parent unit id -> figures by stage
    parent_names: dict[int, str] = field(default_factory=dict)
    due_within: list[Figure] = field(default_factory=list)  # 7, 14 and 30 calendar days
    announced_by_month: list[Figure] = field(default_factory=list)  # the 24 months up to as_of, oldest first


def _months(on: date, count: int = 24) -> list[str]:
    year, month = on.year, on.month
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out[::-1]


def summary_day(rt: Runtime, as_of: date | None) -> date:
    """The day a summary is as of: ``as_of``, or today when None; a day after today is refused.

    The one check the dashboard page and the API's summary share: a future day has no figures yet,
    and answering one would show an empty province as if it were true.
    """
    today = local_date(rt.clock.now())
    if as_of is None:
        return today
    if as_of > today:
        raise ValidationFailed([FieldProblem("as_of", "not_in_future", {"today": today.isoformat()})])
    return as_of


def province_summary(session: Session, rt: Runtime, actor: Actor, *, as_of: date | None = None) -> Summary:
    """Every figure of the dashboard for ``actor``'s scope as of the end of ``as_of`` (today when None).

    A handful of statements: the totals in one, the breakdowns by stage, kind and parent in one
    each, the deadlines in one, the announcements by month in one. A future ``as_of`` is refused
    (``ValidationFailed`` on ``as_of``, see ``summary_day``) before any statement runs.
    """
    on = summary_day(rt, as_of)
    ctx = _status(rt, actor, on)
    s = ctx.status
    base = {"as_of": on.isoformat()} if as_of is not None else {}

    def fig(key: str, count: int, **params: Any) -> Figure:
        return Figure(key, int(count or 0), {**base, **{k: str(v) for k, v in params.items()}})

    levels = sorted(r for r in TARGET_RANK.values() if r >= ESCALATED_RANK)
    horizons = [7, 14, 30]
    # The totals read each unit's late, rank and flags several times over; a MATERIALIZED CTE computes
    # the status once per unit, where an inlined subquery ran its correlated subqueries once per
    # reference (430 of 720 ms at 5,000 units on SQLite: bench/province_pages.py). The other statements
    # read one or two cheap columns, which the planners prune from the inlined subquery.
    once = _Context(on, ctx.until, status_select(rt, actor, on).cte("unit_status").prefix_with("MATERIALIZED"))

    def flag_sum(f: UnitFilter) -> Any:
        return func.sum(case((and_(literal(True), *conditions(once, f)), 1), else_=0))

    totals = session.execute(
        select(
            func.count(), flag_sum(UnitFilter(ever_announced=True)), flag_sum(UnitFilter(late=True)),
            flag_sum(UnitFilter(open_ca=True)), *(flag_sum(UnitFilter(level=n)) for n in levels),
            *(flag_sum(UnitFilter(due_within=n)) for n in horizons),
        ).select_from(once.status)
    ).one()
    count, announced, late, open_ca = totals[:4]
    level_counts = totals[4 : 4 + len(levels)]
    due_counts = totals[4 + len(levels) :]
    by_stage = dict(session.execute(select(s.c.stage, func.count()).group_by(s.c.stage)).tuples().all())
    by_kind: dict[str, list[Figure]] = {}
    for kind, stage, n in session.execute(select(s.c.kind, s.c.stage, func.count()).group_by(s.c.kind, s.c.stage)):
        by_kind.setdefault(kind, []).append(fig(stage, n, kind=kind, stage=stage))
    by_parent: dict[int, list[Figure]] = {}
    for parent, stage, n in session.execute(
        select(s.c.parent_id, s.c.stage, func.count()).where(s.c.parent_id.is_not(None)).group_by(s.c.parent_id, s.c.stage)
    ):
        by_parent.setdefault(parent, []).append(fig(stage, n, parent=parent, stage=stage))
    names = dict(
        session.execute(
            select(UnitVersion.unit_id, UnitVersion.name).where(UnitVersion.unit_id.in_(list(by_parent)), _valid_on(UnitVersion, on))
        ).tuples().all()
    ) if by_parent else {}
    months = _months(on)
    buckets = [(m, *_month_range(m)) for m in months]
    month_of = case(*((and_(HistoryEntry.at >= a, HistoryEntry.at < b), literal(m)) for m, a, b in buckets), else_=None)
    announced_rows = dict(
        session.execute(
            select(month_of.label("month"), func.count(func.distinct(s.c.unit_id)))
            .select_from(s)
            .join(Case, and_(Case.unit_id == s.c.unit_id, Case.workflow == LIFECYCLE))
            .join(HistoryEntry, HistoryEntry.case_id == Case.id)
            .where(
                HistoryEntry.kind == "transition", HistoryEntry.event == ANNOUNCE,
                HistoryEntry.at >= buckets[0][1], HistoryEntry.at < ctx.until,
            )
            .group_by(month_of)
        ).tuples().all()
    )
    return Summary(
        as_of=on,
        units=fig("units", count),
        by_stage=[fig(stage, by_stage.get(stage, 0), stage=stage) for stage in STAGES if by_stage.get(stage) or stage != NO_STAGE],
        ever_announced=fig("ever_announced", announced, ever_announced=1),
        late=fig("late", late, late=1),
        escalation_levels=[fig(str(n), c, level=n) for n, c in zip(levels, level_counts, strict=True)],
        open_ca=fig("open_ca", open_ca, open_ca=1),
        by_kind=by_kind,
        by_parent=by_parent,
        parent_names=names,
        due_within=[fig(str(n), c, due_within=n) for n, c in zip(horizons, due_counts, strict=True)],
        announced_by_month=[fig(m, announced_rows.get(m, 0), announced=m) for m in months],
    )


__all__ = [
    "Figure", "STAGES", "Summary", "UnitFilter", "UnitPage", "UnitRow", "conditions", "end_of_day", "iter_units",
    "list_units", "province_summary", "status_select", "summary_day",
]

