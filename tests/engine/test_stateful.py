"""Random requests against a few live cases: every answer is the one the precedence rules predict.

A Hypothesis state machine fires any event of either workflow (and one no workflow knows) on any
case, as any actor of the province (out of scope, viewer, the scheduler), with valid, missing or
corrupted data and a right, stale or absent expected version, while the clock moves on. A small
model predicts each outcome: scope > role > version > state > data > guard, else the transition
and where it leads. After every step, for every case: a refused request changed nothing; a fired
one raised the version by one and touched no other case; the version counts the transitions; the
history chain verifies and replays to the state; the pending timers are the current state's and
one per open obligation; an end state holds no timer and no open obligation.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select

from qmsflow.engine import (
    SYSTEM,
    Actor,
    Database,
    Definition,
    FixedClock,
    GuardFailed,
    InvalidTransition,
    NotFound,
    NotPermitted,
    QmsflowError,
    Role,
    Runtime,
    StaleVersion,
    advance,
    local_date,
    open_case,
)
from qmsflow.engine.definitions import FieldSpec
from qmsflow.engine.history import verify_case
from qmsflow.engine.models import Case, HistoryEntry, Obligation, Timer
from tests.conftest import HISTORY_KEY, Province, allow_another_open_case, local

SETTINGS = settings(
    max_examples=25,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

START = local(date(2026, 1, 5))
UNKNOWN_EVENT = "launch_rocket"
TERMINATING = {"supersede", "withdraw"}

# Written out by hand rather than asked of the engine, so a scope bug cannot hide in the oracle.
SEES_EVERY_UNIT = {"admin", "lead", "viewer", "system"}
SCOPE = {"gddt": {"SGDDT", "THPT-TNH"}, "mythoi": {"30301", "THCS-MT"}, "tnh": {"THPT-TNH"}, "thcs": {"THCS-MT"}, "snv": {"SNV"}}

# each example runs one case of each workflow, in a unit drawn from these (a supervisor's subtree or not)
UNITS = {"qms_lifecycle": ["THPT-TNH", "THCS-MT", "SNV"], "corrective_action": ["THCS-MT", "THPT-TNH", "SNV"]}


def sees(actor: Actor, unit: str) -> bool:
    """Whether the actor's scope covers the unit (the rule the engine must follow)."""
    return actor.username in SEES_EVERY_UNIT or unit in SCOPE[actor.username]


# ------------------------------------------------------------------------------------------ data


# Integers the guards like (start_applying: procedure_count > 0; confirm_effective: nonconformities_open
# == 0) come first, so plausible requests can get a case deep into its lifecycle; the others follow.
FAVOURED = {"procedure_count": 14, "nonconformities_open": 0}


def valid_value(name: str, spec: FieldSpec, today: date) -> st.SearchStrategy[Any]:
    """Values ``clean_fields`` accepts unchanged (so the model can record them as sent)."""
    if spec.type == "date":
        back = st.integers(0, 40).map(lambda n: (today - timedelta(days=n)).isoformat())
        ahead = st.integers(1, 40).map(lambda n: (today + timedelta(days=n)).isoformat())
        return back if spec.not_in_future else back | ahead
    if spec.type == "integer":
        return st.sampled_from([FAVOURED[name], 0, 2] if name in FAVOURED else [0, 2])
    if spec.type == "boolean":
        return st.booleans()
    if spec.type == "choice":
        return st.sampled_from(spec.choices or [])
    return st.sampled_from(["12/KH", "Nội dung", "x" * (spec.max_length or 1)])


def corrupt_value(spec: FieldSpec, today: date) -> st.SearchStrategy[Any]:
    """Values ``clean_fields`` must refuse for this field."""
    bad: list[Any] = [12345, "   "] if spec.type in ("string", "text") else ["   "]
    if spec.type in ("string", "text") and spec.max_length:
        bad.append("x" * (spec.max_length + 1))
    if spec.type == "date":
        bad += ["05/01/2026", "2026-02-30"]
        if spec.not_in_future:
            bad.append((today + timedelta(days=1)).isoformat())
    if spec.type == "integer":
        bad += ["twelve", -1, True]
    if spec.type == "boolean":
        bad += ["perhaps"]
    if spec.type == "choice":
        bad += ["maybe"]
    return st.sampled_from(bad)


@st.composite
def payload(draw: st.DrawFn, fields: dict[str, FieldSpec], today: date, kind: str) -> dict[str, Any] | None:
    """Event data of ``kind``: valid, none, missing (a required field dropped), corrupt, or extra."""
    if kind == "none":
        return None
    data = {name: draw(valid_value(name, spec, today)) for name, spec in fields.items()}
    if kind == "missing" and data:
        del data[draw(st.sampled_from(sorted(data)))]
    elif kind == "corrupt" and data:
        name = draw(st.sampled_from(sorted(data)))
        data[name] = draw(corrupt_value(fields[name], today))
    elif kind in ("extra", "missing", "corrupt"):
        data["unexpected_field"] = "x"
    return data


def data_is_valid(fields: dict[str, FieldSpec], kind: str) -> bool:
    """Whether a payload of ``kind`` passes the field checks."""
    if kind == "none":
        return not any(spec.required for spec in fields.values())
    return kind == "valid"


# ----------------------------------------------------------------------------------------- model


@dataclass
class ModelCase:
    """What the model believes of one case."""

    id: int
    unit: str
    definition: Definition = field(repr=False)
    state: str
    data: dict[str, Any]
    version: int = 1
    obligations: Counter[str] = field(default_factory=Counter)
    tried: Counter[tuple[str, str]] = field(default_factory=Counter)  # (state, event): steers plausible requests
    lifespan: int = 0  # plausible requests may end the case from this version on


@dataclass(frozen=True)
class Seen:
    """What the database holds for one case, read back after a step."""

    row: tuple[Any, ...]
    history_count: int
    history: tuple[tuple[Any, ...], ...]  # re-read and verified only for the case a step targeted
    timers: tuple[tuple[Any, ...], ...]
    obligations: tuple[tuple[Any, ...], ...]
    findings: tuple[str, ...]


def predict(
    case: ModelCase, actor: Actor, event: str, kind: str, data: dict[str, Any] | None, expected: int | None
) -> type[QmsflowError] | str:
    """The error ``advance`` must raise, or the state it must move the case to."""
    definition = case.definition
    spec = definition.spec.events.get(event)
    if not sees(actor, case.unit):
        return NotFound
    if actor.role is Role.VIEWER or (spec is not None and actor.role not in spec.roles):
        return NotPermitted
    if expected is not None and expected != case.version:
        return StaleVersion
    if spec is None or case.state not in definition.sources(event):
        return InvalidTransition
    if not data_is_valid(spec.fields, kind):
        return GuardFailed
    merged = {**case.data, **(data or {}), **spec.set}
    guard = definition.guards.get(event)
    if guard is not None and not guard.evaluate(merged):
        return GuardFailed
    for t in definition.transitions:
        if t.event == event and t.source == case.state and (t.when is None or t.when.evaluate(merged)):
            return t.dest or case.state
    return GuardFailed  # no branch holds


def record(case: ModelCase, event: str, data: dict[str, Any] | None, to_state: str) -> None:
    """Move the model as a fired event must: data, version, state and obligations."""
    definition = case.definition
    spec = definition.spec.events[event]
    case.data = {**case.data, **(data or {}), **spec.set}
    case.version += 1
    for name, ob in definition.spec.obligations.items():
        if event in ob.fulfilled_by and case.obligations[name] and not ob.recurs:
            case.obligations[name] -= 1  # a recurring one is fulfilled and opens its next cycle
        if ob.opens.event == event:
            case.obligations[name] += 1
    if to_state != case.state:
        if to_state in definition.end_states():
            case.obligations.clear()
        for name, ob in definition.spec.obligations.items():
            if ob.opens.enter == to_state and not case.obligations[name]:
                case.obligations[name] = 1
    case.state = to_state


# --------------------------------------------------------------------------------------- machine


def machine_for(db: Database, rt: Runtime, clock: FixedClock, province: Province) -> type[RuleBasedStateMachine]:
    """A state machine bound to this test's database, runtime, clock and province."""
    actors = [*province.actors.values(), SYSTEM]
    events = {d.name: [*d.spec.events, UNKNOWN_EVENT] for d in rt.registry.definitions()}

    class RandomRequests(RuleBasedStateMachine):
        cases: list[ModelCase]
        seen: dict[int, Seen]

        def open_one(self, workflow: str, unit: str, lifespan: int, minutes_age: int, at: int = 0) -> None:
            """Open a case as the lead and put it at ``at`` among the cases requests are drawn from."""
            definition = rt.registry.latest(workflow)
            today = local_date(clock.now())
            data: dict[str, Any] = {}
            if definition.spec.start_fields:
                data = {
                    "inspection_decision": "88/QĐ",
                    "minutes_number": "14/BB",
                    "findings": "Chưa đánh giá nội bộ",
                    "minutes_signed_on": (today - timedelta(days=minutes_age)).isoformat(),
                }
            with db.write() as session:
                # the unit's earlier cases (of earlier examples, or still open here) are set aside:
                # the open_cases rule has tests of its own (test_open_cases.py)
                allow_another_open_case(session, province.units[unit])
                case = open_case(session, rt, province.actors["lead"], province.units[unit], workflow, data)
                model = ModelCase(case.id, unit, definition, definition.spec.initial, data, lifespan=lifespan)
            for name, ob in definition.spec.obligations.items():
                if ob.opens.enter == model.state:
                    model.obligations[name] = 1
            self.cases.insert(at, model)
            self.seen = self.observe(target=model.id)

        @initialize(
            qms_unit=st.sampled_from(UNITS["qms_lifecycle"]),
            corrective_unit=st.sampled_from(UNITS["corrective_action"]),
            lifespans=st.tuples(st.integers(1, 20), st.integers(1, 8)),
            minutes_age=st.integers(0, 60),
        )
        def open_cases(self, qms_unit: str, corrective_unit: str, lifespans: tuple[int, int], minutes_age: int) -> None:
            # fresh cases each example; the ones of earlier examples are left alone and never read
            clock.set(START)
            self.cases, self.seen = [], {}
            self.open_one("corrective_action", corrective_unit, lifespans[1], minutes_age)
            self.open_one("qms_lifecycle", qms_unit, lifespans[0], minutes_age)

        @rule(data=st.data())
        def fire(self, data: st.DataObject) -> None:
            # now and then time passes first: dates in the data must keep up (no sweep runs: timers stay)
            clock.advance(timedelta(days=data.draw(st.sampled_from([0] * 5 + [1, 10, 45]), label="days later")))
            today = local_date(clock.now())
            case = data.draw(st.sampled_from(self.cases), label="case")
            definition = case.definition
            # mostly plausible requests, so cases get deep into their lifecycle; the rest anything at all
            mode = data.draw(st.sampled_from(["plausible"] * 2 + ["anything"]), label="mode")
            # the least-tried here first: Hypothesis leans to the first choice, and this leans to progress;
            # ending the case is plausible only from its drawn lifespan on, so some cases end late
            candidates = [e for e in definition.events_from(case.state) if e not in TERMINATING or case.version >= case.lifespan]
            candidates.sort(key=lambda e: case.tried[case.state, e])
            if mode == "plausible" and not candidates:
                # the plausible thing to do once a case is over: open the next one for the unit, in its
                # place (Hypothesis leans to the first cases); the ended one stays, at the back
                at = self.cases.index(case)
                self.cases.append(self.cases.pop(at))
                lifespan = data.draw(st.integers(1, 20), label="lifespan")
                self.open_one(definition.name, case.unit, lifespan, data.draw(st.integers(0, 60), label="minutes age"), at)
                return
            if mode == "anything":
                event = data.draw(st.sampled_from(events[definition.name]), label="event")
                actor = data.draw(st.sampled_from(actors), label="actor")
                kind = data.draw(st.sampled_from(["valid", "none", "missing", "corrupt", "extra"]), label="kind")
                expected = data.draw(
                    st.sampled_from([case.version, None, case.version - 1, case.version + 1, 0]), label="expected"
                )
            else:
                event = data.draw(st.sampled_from(candidates), label="event")
                roles = definition.spec.events[event].roles
                allowed = [a for a in actors if a.role in roles and sees(a, case.unit)]
                actor = data.draw(st.sampled_from(allowed), label="actor")
                kind = data.draw(st.sampled_from(["valid"] * 4 + ["missing", "corrupt", "extra", "none"]), label="kind")
                expected = data.draw(st.sampled_from([case.version, None]), label="expected")
            case.tried[case.state, event] += 1
            spec = definition.spec.events.get(event)
            sent = data.draw(payload(spec.fields if spec else {}, today, kind), label="data")
            outcome = predict(case, actor, event, kind, sent, expected)

            try:
                with db.write() as session:
                    result = advance(session, rt, actor, case.id, event, sent, expected_version=expected)
                    got: type[QmsflowError] | str = result.to_state
            except QmsflowError as error:
                got = type(error)
                self.check_error(error, case, actor, event, expected, spec.fields if spec else {}, kind)
            assert got == outcome, f"{actor.username} {event} {sent} v{expected} on {case.state} v{case.version}: {got}"

            before, after = self.seen, self.observe(target=case.id)
            self.seen = after
            for other in self.cases:
                if other is not case or isinstance(outcome, type):
                    assert after[other.id] == before[other.id], f"case {other.id} changed"
            if isinstance(outcome, str):
                new = after[case.id].history[len(before[case.id].history) :]
                assert [r[1] for r in new].count("transition") == 1
                assert after[case.id].row[1] == before[case.id].row[1] + 1
                record(case, event, sent, outcome)

        def check_error(
            self,
            error: QmsflowError,
            case: ModelCase,
            actor: Actor,
            event: str,
            expected: int | None,
            fields: dict[str, FieldSpec],
            kind: str,
        ) -> None:
            """The error names what was asked and what was found; bad data is reported before the guard."""
            if isinstance(error, StaleVersion):
                assert (error.case_id, error.expected, error.actual) == (case.id, expected, case.version)
            elif isinstance(error, InvalidTransition):
                assert (error.case_id, error.state, error.event) == (case.id, case.state, event)
            elif isinstance(error, NotPermitted):
                assert (error.user, error.case_id) == (actor.username, case.id)
            elif isinstance(error, GuardFailed):
                assert error.problems and (error.case_id, error.event) == (case.id, event)
                named = {p.field for p in error.problems}
                if data_is_valid(fields, kind):
                    assert named <= {"guard", "branches"}
                else:
                    assert named <= {*fields, "unexpected_field"}

        def observe(self, target: int | None = None) -> dict[int, Seen]:
            """Read the cases back: rows, timers, obligations and history sizes of all; the history of
            ``target`` and of cases not seen yet (every case's when None), verified."""
            ids = [c.id for c in self.cases]
            with db.read() as session:
                rows = {c.id: c for c in session.scalars(select(Case).where(Case.id.in_(ids)))}
                counts = dict.fromkeys(ids, 0)
                for case_id, count in session.execute(
                    select(HistoryEntry.case_id, func.count()).where(HistoryEntry.case_id.in_(ids)).group_by(HistoryEntry.case_id)
                ):
                    counts[case_id] = count
                reread = [i for i in ids if target is None or i == target or i not in self.seen]
                history: dict[int, list[HistoryEntry]] = {i: [] for i in reread}
                for h in session.scalars(select(HistoryEntry).where(HistoryEntry.case_id.in_(reread)).order_by(HistoryEntry.seq)):
                    history[h.case_id].append(h)
                timers: dict[int, list[tuple[Any, ...]]] = {i: [] for i in ids}
                for t in session.scalars(select(Timer).where(Timer.case_id.in_(ids)).order_by(Timer.id)):
                    timers[t.case_id].append((t.id, t.kind, t.name, t.state, t.obligation_id, t.status, t.due_date))
                obligations: dict[int, list[tuple[Any, ...]]] = {i: [] for i in ids}
                for o in session.scalars(select(Obligation).where(Obligation.case_id.in_(ids)).order_by(Obligation.id)):
                    obligations[o.case_id].append((o.id, o.name, o.cycle, o.status))
                seen = {}
                for i in ids:
                    if i in history:
                        rows_read = tuple((h.seq, h.kind, h.event, h.from_state, h.to_state, h.data) for h in history[i])
                        findings = tuple(str(f) for f in verify_case(HISTORY_KEY, rows[i], history[i]))
                    else:
                        rows_read, findings = self.seen[i].history, self.seen[i].findings
                    seen[i] = Seen(
                        row=(
                            rows[i].state,
                            rows[i].version,
                            rows[i].data,
                            rows[i].updated_at,
                            rows[i].closed_at,
                            rows[i].history_head,
                            rows[i].history_length,
                        ),
                        history_count=counts[i],
                        history=rows_read,
                        timers=tuple(timers[i]),
                        obligations=tuple(obligations[i]),
                        findings=findings,
                    )
                return seen

        @invariant()
        def every_case_is_what_the_model_says_and_consistent(self) -> None:
            for case in self.cases:
                seen = self.seen[case.id]
                state, version, data, _, closed_at, _, _ = seen.row
                assert (state, version, data) == (case.state, case.version, case.data)
                assert seen.findings == () and seen.history_count == len(seen.history)
                # the version counts the transitions, and the history replays to the state
                moves = [h for h in seen.history if h[1] in ("opened", "transition")]
                assert version == 1 + sum(1 for h in moves if h[1] == "transition")
                assert moves[0][1] == "opened" and [h[1] for h in moves[1:]] == ["transition"] * (len(moves) - 1)
                at: str | None = None
                for _, _, _, from_state, to_state, _ in moves:
                    assert from_state == at
                    at = to_state
                assert at == state
                # pending timers: exactly the current state's, and one per open obligation
                pending = [t for t in seen.timers if t[5] == "pending"]
                open_obligations = {o[0]: o[1] for o in seen.obligations if o[3] == "open"}
                assert Counter(open_obligations.values()) == +case.obligations
                assert sorted(t[2] for t in pending if t[1] == "state") == sorted(case.definition.spec.states[state].timers)
                assert all(t[3] == state for t in pending if t[1] == "state")
                assert sorted(t[4] for t in pending if t[1] == "obligation") == sorted(open_obligations)
                if state in case.definition.end_states():
                    assert pending == [] and open_obligations == {} and closed_at is not None
                else:
                    assert closed_at is None

    return RandomRequests


def test_random_requests_get_the_predicted_answer_and_leave_every_case_consistent(
    db: Database, rt: Runtime, clock: FixedClock, province: Province
) -> None:
    run_state_machine_as_test(machine_for(db, rt, clock, province), settings=SETTINGS)
