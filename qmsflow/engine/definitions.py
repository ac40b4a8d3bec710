"""Workflow definitions as data: the schema, the loader and the checks run on load.

A definition is a YAML file in ``workflows/``. It is parsed with ruamel.yaml (so every key keeps its
line), its shape is checked by pydantic, then its meaning is checked here (states reachable, an end
state, events naming known states and roles, conditions in the allowed language, timers that make
sense). Every problem names the file, the line and the dotted key; none of them crashes the loader.

The shape is chosen to round-trip to a BPMN 2.0 subset: a state is a user task (``task``), a
catching event (``wait``) or an end event (``end``); an event is a sequence flow, or an exclusive
gateway when it has ``branches`` with conditions; ``roles`` are candidate groups; a timer is a
non-interrupting boundary timer event whose working-day length and ladder ride in an extension.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator

from .calendar import LengthUnit
from .conditions import Condition, literal_values, parse_condition
from .errors import ConditionError, DefinitionError, DefinitionProblem

if TYPE_CHECKING:
    from ruamel.yaml.constructor import DuplicateKeyError

NAME_RE = r"^[a-z][a-z0-9_]*$"


class Role(StrEnum):
    """Who acts: the five user roles, and the scheduler acting on a timer."""

    ADMIN = "admin"
    LEAD = "lead"
    SUPERVISOR = "supervisor"
    UNIT_OFFICER = "unit_officer"
    VIEWER = "viewer"
    SYSTEM = "system"


class Target(StrEnum):
    """The bodies of the escalation order (docs/domain.md: unit head -> supervisor -> lead -> UBND tỉnh)."""

    UNIT_HEAD = "unit_head"
    SUPERVISOR = "supervisor"
    LEAD = "lead"
    PROVINCIAL_PC = "provincial_pc"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Label(_Strict):
    """A text in Vietnamese (required) and English."""

    vi: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def get(self, language: str) -> str:
        """Return the text in ``language``, Vietnamese when it is not English."""
        return self.en if language == "en" else self.vi


class FieldSpec(_Strict):
    """One datum an event records into the case data."""

    type: Literal["string", "text", "date", "integer", "boolean", "choice"]
    label: Label
    required: StrictBool = False
    not_in_future: StrictBool = False
    max_length: StrictInt | None = Field(default=None, gt=0)
    choices: list[str] | None = None


class Reminder(_Strict):
    """A reminder ``before`` units ahead of the due date."""

    before: StrictInt = Field(gt=0)
    unit: LengthUnit = LengthUnit.WORKING_DAYS


class LadderLevel(_Strict):
    """One escalation level: ``after`` units past the due date, to ``target``."""

    after: StrictInt = Field(ge=0)
    unit: LengthUnit = LengthUnit.WORKING_DAYS
    target: Target


class TimerStart(_Strict):
    """Where a timer counts from: entering the state, a date field of the case, or a fixed date."""

    on: Literal["enter", "open"] | None = None
    field: str | None = None
    date: dt.date | None = None


class TimerSpec(_Strict):
    """A deadline: start, length, reminders, ladder and the action at the due time."""

    label: Label
    start: TimerStart = TimerStart(on="enter")
    length: StrictInt = Field(ge=0)
    unit: LengthUnit
    reminders: list[Reminder] = []
    escalation: str | list[LadderLevel] | None = None
    on_due: str | None = None  # an event to fire as ``system`` at the due time; else only escalate


class Branch(_Strict):
    """One outgoing path of an exclusive gateway; the last may omit ``when`` as the default."""

    when: str | None = None
    to: str


class EventSpec(_Strict):
    """A thing that happens to a case: who may fire it, from where, to where, with what data."""

    label: Label
    roles: list[Role] = Field(min_length=1)
    from_: list[str] | Literal["*"] = Field(alias="from")
    to: str | None = None
    branches: list[Branch] | None = None
    fields: dict[str, FieldSpec] = {}
    guard: str | None = None
    guard_message: Label | None = None
    set: dict[str, str | int | bool | None] = {}

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def system_only(self) -> bool:
        """Whether only the scheduler fires it (``mark_overdue``): never a person's button, never a person's act."""
        return set(self.roles) == {Role.SYSTEM}


class StateSpec(_Strict):
    """A state: a task someone must do, a wait for something outside, or an end."""

    kind: Literal["task", "wait", "end"]
    label: Label
    stage: str | None = None
    timers: dict[str, TimerSpec] = {}


class ObligationOpens(_Strict):
    """What opens an obligation: entering a state or an event."""

    enter: str | None = None
    event: str | None = None


class ObligationSpec(_Strict):
    """A duty not tied to a state, with its own timer until an event fulfils it."""

    label: Label
    opens: ObligationOpens
    fulfilled_by: list[str] = Field(min_length=1)
    recurs: StrictBool = False
    recur_from: str | None = None  # a date field of the fulfilling event the next cycle counts from
    timer: TimerSpec


class OpenCasesPer(_Strict):
    """Several open cases per unit, but one for each value of these start fields (e.g. one per inspection)."""

    one_per: list[str] = Field(min_length=1)


class DefinitionSpec(_Strict):
    """The whole file."""

    name: str = Field(pattern=NAME_RE)
    version: StrictInt = Field(ge=1)
    label: Label
    description: str = ""
    initial: str
    start_fields: dict[str, FieldSpec] = {}  # what opening a case records (the BPMN start event's form)
    states: dict[str, StateSpec] = Field(min_length=1)
    events: dict[str, EventSpec] = Field(min_length=1)
    ladders: dict[str, list[LadderLevel]] = {}
    obligations: dict[str, ObligationSpec] = {}
    # How many open cases of this workflow a unit may hold at once: "one" (the lifecycle), "many", or
    # one per value of some start fields. The database enforces it (cases.open_key, migration 0003).
    open_cases: Literal["one", "many"] | OpenCasesPer = "one"

    @field_validator("states", "events", "ladders", "obligations")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not re.match(NAME_RE, str(key)):
                raise ValueError(f"name {key!r} must be lower_snake_case")
        return value


@dataclass(frozen=True)
class Transition:
    """One compiled path of an event: from a source to a destination, under an optional condition."""

    event: str
    source: str
    dest: str | None  # None: an internal transition that records data and stays
    when: Condition | None


@dataclass(frozen=True)
class Definition:
    """A validated, compiled definition: the spec plus what the engine derives from it once."""

    spec: DefinitionSpec
    path: str
    transitions: tuple[Transition, ...]
    guards: Mapping[str, Condition]
    ladders: Mapping[str, tuple[LadderLevel, ...]]  # keyed "state.timer" or "obligation:<name>"

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self.spec.name

    @property
    def version(self) -> int:
        """The definition's version."""
        return self.spec.version

    @property
    def key(self) -> tuple[str, int]:
        """(name, version): how cases refer to it."""
        return (self.spec.name, self.spec.version)

    def end_states(self) -> set[str]:
        """Return the names of end states."""
        return {n for n, s in self.spec.states.items() if s.kind == "end"}

    def sources(self, event: str) -> set[str]:
        """Return the states an event can fire from."""
        return {t.source for t in self.transitions if t.event == event}

    def events_from(self, state: str) -> list[str]:
        """Return the events that can fire from ``state``, in definition order."""
        return [e for e in self.spec.events if state in self.sources(e)]

    def ladder(self, timer_key: str) -> tuple[LadderLevel, ...]:
        """Return the escalation ladder of a timer (empty when it has none)."""
        return self.ladders.get(timer_key, ())

    def open_key(self, data: Mapping[str, Any]) -> str | None:
        """Return the key two open cases of one unit may not share (None: no limit), from the case's start data."""
        policy = self.spec.open_cases
        if policy == "many":
            return None
        if policy == "one":
            return self.spec.name
        assert isinstance(policy, OpenCasesPer)
        return "\x1f".join([self.spec.name, *(str(data.get(name, "")) for name in policy.one_per)])

    def timer_spec(self, timer_key: str) -> TimerSpec:
        """Return the spec of a timer keyed "state.timer" or "obligation:<name>"."""
        if timer_key.startswith("obligation:"):
            return self.spec.obligations[timer_key.split(":", 1)[1]].timer
        state, name = timer_key.split(".", 1)
        return self.spec.states[state].timers[name]


# ---------------------------------------------------------------------------------------- loading


def load_definition(path: str | Path, *, cache_dir: Path | None = None) -> Definition:
    """Load, check and compile one definition file; raise DefinitionError listing every problem.

    With ``cache_dir``, the parsed YAML of a file that compiled is kept there (see ``_ParseCache``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError([DefinitionProblem(str(path), None, "", f"cannot read: {exc}")]) from None
    return parse_definition(text, str(path), cache_dir=cache_dir)


def parse_definition(text: str, filename: str = "<string>", *, cache_dir: Path | None = None) -> Definition:
    """Check and compile definition source ``text``; ``filename`` is used in error messages."""
    cache = _ParseCache(cache_dir, text) if cache_dir is not None else None
    if cache is not None:
        plain = cache.read()
        if plain is not None:
            compiled = _compile_quietly(plain, filename)
            if compiled is not None:
                return compiled
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError

    yaml = YAML(typ="rt", pure=True)
    try:
        raw = yaml.load(text)
    except DuplicateKeyError as exc:
        raise DefinitionError([_duplicate_key_problem(text, filename, exc)]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise DefinitionError(
            [DefinitionProblem(filename, line, "", f"YAML syntax: {exc.problem or exc.context}")]
        ) from None
    except Exception as exc:  # ruamel raises a few non-marked errors (bad tags, odd constructs)
        raise DefinitionError([DefinitionProblem(filename, None, "", f"YAML: {exc}")]) from None
    if not isinstance(raw, Mapping):
        raise DefinitionError([DefinitionProblem(filename, 1, "", "the file must be a mapping")])
    locate = _Locator(raw)
    plain = _plain(raw)
    try:
        spec = DefinitionSpec.model_validate(plain)
    except ValidationError as exc:
        problems = []
        errors = [(err, [p for p in err["loc"] if not _is_pydantic_union_tag(p)]) for err in exc.errors()]
        for err, loc in errors:
            if len(loc) < len(err["loc"]) and any(
                len(other) > len(loc) and other[: len(loc)] == loc for _, other in errors
            ):
                # a union member that did not fit at all, when another member fitted and failed
                # deeper: "escalation: should be a string" would hide "escalation.0.after: >= 0".
                continue
            problems.append(DefinitionProblem(filename, locate.line(loc), _dotted(loc), err["msg"]))
        raise DefinitionError(_dedupe(problems)) from None
    problems = []
    compiled = _Compiler(spec, filename, locate, problems).compile()
    if problems or compiled is None:
        raise DefinitionError(problems)
    if cache is not None:
        cache.write(plain)
    return compiled


def _compile_quietly(plain: Any, filename: str) -> Definition | None:
    """Compile already-parsed data, or return None on any problem (the caller then parses the YAML
    again, so that every problem is reported with its line, exactly as without a cache)."""
    try:
        spec = DefinitionSpec.model_validate(plain)
    except ValidationError:
        return None
    problems: list[DefinitionProblem] = []
    compiled = _Compiler(spec, filename, _Locator({}), problems).compile()
    return None if problems else compiled


class _ParseCache:
    """The parsed YAML of a definition that compiled, kept as JSON so that a command skips ruamel.

    ruamel's pure-Python round-trip parser is most of a short command's start-up (bench/startup.py).
    Invariant: an entry holds ``_plain(YAML load)`` of exactly the text it is keyed by, as parsed by
    this loader's own code with this ruamel version: the key hashes the text, the ruamel version and
    this module's source, so an edited file, an upgrade or a change to ``_plain`` misses. Only data that
    comes back from JSON equal to what was parsed is written (a date, or an integer used as a key,
    would not), and an entry is only used if it compiles without a problem; anything else parses the
    YAML again. The cache is an optimisation only: a missing, unreadable or unwritable folder is ignored
    (it is never created here).
    """

    FORMAT = "1"

    def __init__(self, directory: Path, text: str) -> None:
        from importlib.metadata import version

        key = hashlib.sha256()
        for part in (self.FORMAT, version("ruamel.yaml"), _own_source_digest(), text):
            key.update(part.encode("utf-8"))
            key.update(b"\0")
        self.path = directory / f"{key.hexdigest()}.json"

    def read(self) -> Any:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def write(self, plain: Any) -> None:
        try:
            encoded = json.dumps(plain, ensure_ascii=False)  # in order: the order of states and events means something
        except (TypeError, ValueError):
            return
        if json.loads(encoded) != plain:
            return
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(encoded)
            os.replace(tmp, self.path)  # readers see the old entry or the whole new one, never a part
        except OSError:
            return


_SOURCE_DIGEST: str | None = None


def _own_source_digest() -> str:
    global _SOURCE_DIGEST
    if _SOURCE_DIGEST is None:
        _SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return _SOURCE_DIGEST


def _duplicate_key_problem(text: str, filename: str, exc: DuplicateKeyError) -> DefinitionProblem:
    """Name a duplicated key by its dotted path; ruamel only gives the marks of the mapping and the key."""
    match = re.search(r'duplicate key "(.*?)" with value', str(exc.problem))
    name = match.group(1) if match else ""
    line = exc.problem_mark.line + 1 if exc.problem_mark else None
    found = None
    if exc.context_mark is not None:
        from ruamel.yaml import YAML

        lenient = YAML(typ="rt", pure=True)
        lenient.allow_duplicate_keys = True  # keeps the first value, so lc knows the first line
        try:
            found = _find_mapping(lenient.load(text), (exc.context_mark.line, exc.context_mark.column), [])
        except Exception:  # the marks are enough for a message; never let this hide the problem
            found = None
    if found is None:
        return DefinitionProblem(filename, line, name, f"duplicate key {name!r}")
    path, mapping = found
    try:
        first = f": first given on line {mapping.lc.key(name)[0] + 1}"
    except (KeyError, TypeError, AttributeError):
        first = ""
    return DefinitionProblem(filename, line, _dotted([*path, name]), f"duplicate key {name!r}{first}")


def _find_mapping(node: Any, mark: tuple[int, int], path: list[object]) -> tuple[list[object], Any] | None:
    if isinstance(node, Mapping):
        if hasattr(node, "lc") and (node.lc.line, node.lc.col) == mark:
            return path, node
        children: Iterable[tuple[object, Any]] = node.items()
    elif isinstance(node, list):
        children = enumerate(node)
    else:
        return None
    for key, child in children:
        found = _find_mapping(child, mark, [*path, key])
        if found is not None:
            return found
    return None


def _is_pydantic_union_tag(part: object) -> bool:
    # pydantic puts the union member's type name in the location (``str``, ``list[...]``).
    return isinstance(part, str) and (part in {"str", "int", "bool", "none"} or "[" in part or part.startswith("literal"))


def _dedupe(problems: list[DefinitionProblem]) -> list[DefinitionProblem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for p in problems:
        if (p.key, p.message) not in seen:
            seen.add((p.key, p.message))
            out.append(p)
    return out


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k) if not isinstance(k, (int, dt.date)) else k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _dotted(loc: Iterable[object]) -> str:
    return ".".join(str(p) for p in loc)


class _Locator:
    """Finds the source line of a key path in the ruamel tree."""

    def __init__(self, root: Any) -> None:
        self.root = root

    def line(self, loc: Iterable[object]) -> int | None:
        node = self.root
        line: int | None = 1
        for part in loc:
            key: Any = "from" if part == "from_" else part
            if isinstance(node, Mapping) and key in node:
                if hasattr(node, "lc"):
                    try:
                        line = node.lc.key(key)[0] + 1
                    except (KeyError, TypeError):
                        pass
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
                if hasattr(node, "lc"):
                    try:
                        line = node.lc.item(key)[0] + 1
                    except (KeyError, TypeError):
                        pass
                node = node[key]
            else:
                break
        return line


def _literal_misfit(field_type: str, choices: tuple[str, ...], value: object) -> str | None:
    """Why ``value`` cannot be a value of a field of ``field_type``, or None if it can."""
    if field_type == "integer":
        return None if isinstance(value, int) and not isinstance(value, bool) else "the field is an integer"
    if field_type == "boolean":
        return None if isinstance(value, bool) else "the field is a boolean (true or false)"
    if not isinstance(value, str):
        return f"the field is {'a date' if field_type == 'date' else 'text'}"
    if field_type == "date":
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return "the field is a date, written 'YYYY-MM-DD'"
        return None if len(value) == 10 else "the field is a date, written 'YYYY-MM-DD'"
    if field_type == "choice" and value not in choices:
        return f"the field is one of {list(choices)}"
    return None


class _Compiler:
    """Runs the semantic checks and derives transitions, guards and ladders."""

    def __init__(
        self, spec: DefinitionSpec, filename: str, locate: _Locator, problems: list[DefinitionProblem]
    ) -> None:
        self.spec = spec
        self.filename = filename
        self.locate = locate
        self.problems = problems

    def problem(self, loc: list[object], message: str) -> None:
        self.problems.append(DefinitionProblem(self.filename, self.locate.line(loc), _dotted(loc), message))

    def compile(self) -> Definition | None:
        spec = self.spec
        states = spec.states
        if spec.initial not in states:
            self.problem(["initial"], f"unknown state {spec.initial!r}")
        elif states[spec.initial].kind == "end":
            self.problem(["initial"], "the initial state cannot be an end state")
        if not any(s.kind == "end" for s in states.values()):
            self.problem(["states"], "no end state: every lifecycle must be able to finish")

        known_fields = self._known_fields()
        transitions: list[Transition] = []
        guards: dict[str, Condition] = {}
        for name, event in spec.events.items():
            transitions.extend(self._event(name, event, known_fields, guards))

        ladders: dict[str, tuple[LadderLevel, ...]] = {}
        for state_name, state in states.items():
            if state.kind == "end" and state.timers:
                self.problem(["states", state_name, "timers"], "an end state cannot have timers")
            for timer_name, timer in state.timers.items():
                loc: list[object] = ["states", state_name, "timers", timer_name]
                ladders[f"{state_name}.{timer_name}"] = self._timer(loc, timer, known_fields, state_name)
        for ob_name, ob in spec.obligations.items():
            loc = ["obligations", ob_name]
            if (ob.opens.enter is None) == (ob.opens.event is None):
                self.problem(loc + ["opens"], "give exactly one of 'enter' (a state) or 'event'")
            if ob.opens.enter is not None and ob.opens.enter not in states:
                self.problem(loc + ["opens", "enter"], f"unknown state {ob.opens.enter!r}")
            if ob.opens.event is not None and ob.opens.event not in spec.events:
                self.problem(loc + ["opens", "event"], f"unknown event {ob.opens.event!r}")
            for i, ev in enumerate(ob.fulfilled_by):
                if ev not in spec.events:
                    self.problem(loc + ["fulfilled_by", i], f"unknown event {ev!r}")
            if ob.recur_from is not None and not ob.recurs:
                self.problem(loc + ["recur_from"], "only a recurring obligation has recur_from")
            if ob.recur_from is not None and not all(
                ob.recur_from in spec.events[e].fields for e in ob.fulfilled_by if e in spec.events
            ):
                self.problem(loc + ["recur_from"], f"every fulfilling event must record {ob.recur_from!r}")
            if ob.timer.on_due is not None:
                self.problem(loc + ["timer", "on_due"], "an obligation's timer escalates; it fires no event")
            ladders[f"obligation:{ob_name}"] = self._timer(loc + ["timer"], ob.timer, known_fields, None)

        self._reachability(transitions)
        self._open_cases_policy()
        if not self.problems:
            check_timer_starts(self, transitions)
        if self.problems:
            return None
        return Definition(
            spec=spec,
            path=self.filename,
            transitions=tuple(transitions),
            guards=guards,
            ladders=ladders,
        )

    def _open_cases_policy(self) -> None:
        policy = self.spec.open_cases
        if isinstance(policy, OpenCasesPer):
            for i, name in enumerate(policy.one_per):
                spec = self.spec.start_fields.get(name)
                if spec is None or not spec.required:
                    self.problem(["open_cases", "one_per", i], f"{name!r} must be a required start field")

    def _known_fields(self) -> set[str]:
        fields: set[str] = set(self.spec.start_fields)
        for event in self.spec.events.values():
            fields.update(event.fields)
            fields.update(event.set)
        return fields

    def _condition(self, loc: list[object], source: str, known_fields: set[str]) -> Condition | None:
        try:
            condition = parse_condition(source)
        except ConditionError as exc:
            self.problem(loc, f"condition rejected: {exc.reason}")
            return None
        unknown = condition.fields() - known_fields
        if unknown:
            self.problem(loc, f"condition reads unknown field(s) {sorted(unknown)}")
            return condition
        types = self._field_types()
        for name, _op, other in condition.comparisons():
            declared = types.get(name, [])
            other_field = other.attr if isinstance(other, ast.Attribute) and isinstance(other.value, ast.Name) else None
            if other_field is not None:
                theirs = types.get(other_field, [])
                if declared and theirs and not {t for t, _ in declared} & {t for t, _ in theirs}:
                    self.problem(loc, f"condition compares {name!r} ({declared[0][0]}) with {other_field!r} ({theirs[0][0]})")
                continue
            for value in literal_values(other):
                if declared and all(_literal_misfit(t, c, value) for t, c in declared):
                    self.problem(loc, f"condition compares {name!r} with {value!r}: {_literal_misfit(*declared[0], value)}")
        return condition

    def _field_types(self) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
        """Each field's declared (type, choices), from every event and the start form; ``set`` infers."""
        types: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        specs = [self.spec.start_fields, *(e.fields for e in self.spec.events.values())]
        for fields in specs:
            for name, field_spec in fields.items():
                types.setdefault(name, []).append((field_spec.type, tuple(field_spec.choices or ())))
        for event in self.spec.events.values():
            for name, value in event.set.items():
                inferred = "boolean" if isinstance(value, bool) else "integer" if isinstance(value, int) else "string"
                if value is not None:
                    types.setdefault(name, []).append((inferred, ()))
        return types

    def _event(
        self, name: str, event: EventSpec, known_fields: set[str], guards: dict[str, Condition]
    ) -> list[Transition]:
        loc: list[object] = ["events", name]
        states = self.spec.states
        if event.from_ == "*":
            sources = [s for s, st in states.items() if st.kind != "end"]
        else:
            sources = list(event.from_)
            if not sources:
                self.problem(loc + ["from"], "an event needs at least one source state")
            for i, src in enumerate(sources):
                if src not in states:
                    self.problem(loc + ["from", i], f"unknown state {src!r}")
                elif states[src].kind == "end":
                    self.problem(loc + ["from", i], f"{src!r} is an end state: nothing fires from it")
            if len(set(sources)) != len(sources):
                self.problem(loc + ["from"], "a source state is listed twice")
        if event.to is not None and event.branches is not None:
            self.problem(loc, "give either 'to' or 'branches', not both")
        for field_name, field_spec in event.fields.items():
            if not re.match(NAME_RE, field_name):
                self.problem(loc + ["fields", field_name], "field names must be lower_snake_case")
            if field_spec.type == "choice" and not field_spec.choices:
                self.problem(loc + ["fields", field_name, "choices"], "a choice field needs choices")
            if field_spec.not_in_future and field_spec.type != "date":
                self.problem(loc + ["fields", field_name, "not_in_future"], "only a date can be not_in_future")
        if event.guard is not None:
            condition = self._condition(loc + ["guard"], event.guard, known_fields)
            if condition is not None:
                guards[name] = condition
        destinations: list[tuple[str | None, Condition | None]] = []
        if event.branches is not None:
            if not event.branches:
                self.problem(loc + ["branches"], "an exclusive gateway needs at least one branch")
            for i, branch in enumerate(event.branches):
                bloc = loc + ["branches", i]
                if branch.to not in states:
                    self.problem(bloc + ["to"], f"unknown state {branch.to!r}")
                if branch.when is None and i != len(event.branches) - 1:
                    self.problem(bloc, "only the last branch may omit 'when' (it is the default)")
                cond = self._condition(bloc + ["when"], branch.when, known_fields) if branch.when else None
                destinations.append((branch.to, cond))
        else:
            if event.to is not None and event.to not in states:
                self.problem(loc + ["to"], f"unknown state {event.to!r}")
            destinations.append((event.to, None))
        return [
            Transition(event=name, source=src, dest=dest, when=cond)
            for src in sources
            if src in states
            for dest, cond in destinations
        ]

    def _timer(
        self, loc: list[object], timer: TimerSpec, known_fields: set[str], state: str | None
    ) -> tuple[LadderLevel, ...]:
        start = timer.start
        given = [x for x in (start.on, start.field, start.date) if x is not None]
        if len(given) != 1:
            self.problem(loc + ["start"], "give exactly one of 'on', 'field' or 'date'")
        if start.on == "enter" and state is None:
            self.problem(loc + ["start", "on"], "an obligation's timer starts 'on: open', not on entering a state")
        if start.on == "open" and state is not None:
            self.problem(loc + ["start", "on"], "a state timer starts 'on: enter'")
        if start.field is not None and start.field not in known_fields:
            self.problem(loc + ["start", "field"], f"unknown field {start.field!r}: no event records it")
        befores = [r.before for r in timer.reminders]
        if len(set(befores)) != len(befores):
            self.problem(loc + ["reminders"], "two reminders at the same offset")
        # Steps are known by their position in the plan (timer rows store the next one's index), so
        # their order must not depend on the calendar: in one unit it is the order of the numbers; with
        # two units a calendar change could swap two reminders, one would fire twice and one never.
        reminder_units = sorted({r.unit.value for r in timer.reminders})
        if len(reminder_units) > 1:
            self.problem(
                loc + ["reminders"],
                f"timer {loc[-1] if loc[-1] != 'timer' else loc[-2]!s}: reminders mix units ({', '.join(reminder_units)}); "
                "count every reminder of one timer in the same unit",
            )
        if timer.on_due is not None:
            event = self.spec.events.get(timer.on_due)
            if event is None:
                self.problem(loc + ["on_due"], f"unknown event {timer.on_due!r}")
            else:
                if Role.SYSTEM not in event.roles:
                    self.problem(loc + ["on_due"], f"event {timer.on_due!r} must allow role 'system'")
                if state is not None and event.from_ != "*" and state not in event.from_:
                    self.problem(loc + ["on_due"], f"event {timer.on_due!r} cannot fire from {state!r}")
        ladder: tuple[LadderLevel, ...] = ()
        if isinstance(timer.escalation, str):
            if timer.escalation not in self.spec.ladders:
                self.problem(loc + ["escalation"], f"unknown ladder {timer.escalation!r}")
            else:
                ladder = tuple(self.spec.ladders[timer.escalation])
        elif timer.escalation is not None:
            ladder = tuple(timer.escalation)
        offsets = [(lv.unit, lv.after) for lv in ladder]
        ladder_units = sorted({lv.unit.value for lv in ladder})
        if len(ladder_units) > 1:  # the same reason as for reminders, above
            self.problem(
                loc + ["escalation"],
                f"timer {loc[-1] if loc[-1] != 'timer' else loc[-2]!s}: escalation levels mix units ({', '.join(ladder_units)}); "
                "count every level of one ladder in the same unit",
            )
        for (u1, a1), (u2, a2) in zip(offsets, offsets[1:], strict=False):
            if u1 == u2 and a2 < a1:
                self.problem(loc + ["escalation"], "ladder levels must not go back in time")
                break
        return ladder

    def _reachability(self, transitions: list[Transition]) -> None:
        spec = self.spec
        if spec.initial not in spec.states:
            return
        reached = {spec.initial}
        frontier = [spec.initial]
        while frontier:
            current = frontier.pop()
            for t in transitions:
                # a destination that is not a state was reported by _event; following it would
                # report a phantom "states.<typo>" as well
                if t.source == current and t.dest in spec.states and t.dest not in reached:
                    reached.add(t.dest)
                    frontier.append(t.dest)
        for name in spec.states:
            if name not in reached:
                self.problem(["states", name], "unreachable: no event leads here from the initial state")
        ends = {n for n, s in spec.states.items() if s.kind == "end"}
        for name in reached - ends:
            # every live state must be able to reach an end: otherwise cases get stuck forever
            seen = {name}
            stack = [name]
            while stack:
                cur = stack.pop()
                for t in transitions:
                    if t.source == cur and t.dest is not None and t.dest not in seen:
                        seen.add(t.dest)
                        stack.append(t.dest)
            if not seen & ends:
                self.problem(["states", name], "no path from here to an end state")


def _date_fields_given(fields: Mapping[str, FieldSpec]) -> frozenset[str]:
    """The fields a submission is sure to record as a date: required date fields (others may be left out)."""
    return frozenset(name for name, spec in fields.items() if spec.required and spec.type == "date")


def check_timer_starts(compiler: _Compiler, transitions: list[Transition]) -> None:
    """Refuse a timer that starts at a date field the case may not hold when the timer opens.

    A state timer (and an obligation opened on entering a state) opens when a case enters the state,
    so its field must be a required date field of the opening fields or of an event on *every* path
    from ``initial`` into the state, and no later event on the path may set it to null: a must-hold
    data-flow analysis over the transitions. An obligation opened by an event counts from that
    event's data only, so the field must be a required date field of that event. Without this
    check a transition could write its rows and then fail to plan the new state's deadline.
    """
    spec = compiler.spec
    events = spec.events

    def after(held: frozenset[str], event: str) -> frozenset[str]:
        ev = events[event]
        return (held | _date_fields_given(ev.fields)) - frozenset(ev.set)

    # held[s]: the date fields every case in state s holds, whatever path it took (None: not reached yet).
    held: dict[str, frozenset[str] | None] = {name: None for name in spec.states}
    on_entry: dict[str, frozenset[str] | None] = {name: None for name in spec.states}
    changed = True
    while changed:
        changed = False
        for name in spec.states:
            entries = [after(h, t.event) for t in transitions if t.dest == name and t.source != name and (h := held[t.source]) is not None]
            if name == spec.initial:
                entries.append(_date_fields_given(spec.start_fields))
            if not entries:
                continue
            entry = frozenset.intersection(*entries)
            # events that stay in the state (no destination, or back to it) do not re-open its timers,
            # but what they set to null is gone for the paths that leave afterwards
            staying = [t.event for t in transitions if t.source == name and t.dest in (None, name)]
            value = entry - frozenset(k for e in staying for k, v in events[e].set.items() if v is None)
            if value != held[name] or entry != on_entry[name]:
                held[name], on_entry[name] = value, entry
                changed = True

    def check(loc: list[object], timer: TimerSpec, state: str) -> None:
        field = timer.start.field
        given = on_entry[state]
        if field is not None and given is not None and field not in given:
            compiler.problem(
                loc + ["start", "field"],
                f"a case can enter {state!r} without a date in {field!r}: start the timer at a required date "
                f"field of the opening fields or of every event on the way in",
            )

    for state_name, state in spec.states.items():
        for timer_name, timer in state.timers.items():
            check(["states", state_name, "timers", timer_name], timer, state_name)
    for ob_name, ob in spec.obligations.items():
        loc: list[object] = ["obligations", ob_name, "timer"]
        if ob.opens.enter is not None and ob.opens.enter in spec.states:
            check(loc, ob.timer, ob.opens.enter)
        elif ob.opens.event is not None and ob.opens.event in events and ob.timer.start.field is not None:
            if ob.timer.start.field not in _date_fields_given(events[ob.opens.event].fields):
                compiler.problem(
                    loc + ["start", "field"],
                    f"{ob.timer.start.field!r} must be a required date field of {ob.opens.event!r}, which opens this obligation",
                )


def load_directory(directory: str | Path, *, cache_dir: Path | None = None) -> tuple[list[Definition], list[DefinitionProblem]]:
    """Load every ``*.yaml`` file under ``directory``; return the good ones and all problems."""
    good: list[Definition] = []
    problems: list[DefinitionProblem] = []
    seen: dict[tuple[str, int], str] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            definition = load_definition(path, cache_dir=cache_dir)
        except DefinitionError as exc:
            problems.extend(exc.problems)
            continue
        if definition.key in seen:
            problems.append(
                DefinitionProblem(str(path), 1, "version", f"{definition.name} v{definition.version} is also defined in {seen[definition.key]}")
            )
            continue
        seen[definition.key] = str(path)
        good.append(definition)
    return good, problems


__all__ = [
    "Branch",
    "Definition",
    "DefinitionSpec",
    "EventSpec",
    "FieldSpec",
    "Label",
    "LadderLevel",
    "ObligationSpec",
    "OpenCasesPer",
    "Role",
    "StateSpec",
    "Target",
    "TimerSpec",
    "Transition",
    "load_definition",
    "load_directory",
    "parse_definition",
]
