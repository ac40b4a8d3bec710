"""The engine's typed errors: one root, a subclass per way a request can fail.

The web layer maps these to HTTP status codes in one place; the engine never raises HTTP errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime


class QmsflowError(Exception):
    """Root of every error the engine raises on purpose."""


@dataclass
class DefinitionProblem:
    """One problem found in a workflow definition file.

    Attributes:
        file: path of the definition file.
        line: 1-based line of the offending key, or None when unknown.
        key: dotted path of the offending key (``events.approve_plan.to``).
        message: what is wrong, in plain words.
    """

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key or '<root>'}: {self.message}"


class DefinitionError(QmsflowError):
    """A workflow definition is invalid.

    Attributes:
        problems: every problem found, each naming file, line and key.
    """

    def __init__(self, problems: list[DefinitionProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConditionError(QmsflowError):
    """A condition expression is not in the allowed language.

    Attributes:
        expression: the offending source text.
        reason: why it was rejected.
    """

    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(f"{reason}: {expression!r}")


class ConfigurationError(QmsflowError):
    """A setting is missing or malformed."""


class NotFound(QmsflowError):
    """The object does not exist, or the user may not see it (the two are deliberately the same).

    Attributes:
        kind: what was looked up ("case", "unit", "user").
        key: the identifier asked for.
    """

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} not found")


class NotPermitted(QmsflowError):
    """The user may see the object but not do this to it.

    Attributes:
        user: the acting user's name.
        action: what was attempted.
        case_id: the case, when the action was on a case.
    """

    def __init__(self, user: str, action: str, case_id: int | None = None) -> None:
        self.user = user
        self.action = action
        self.case_id = case_id
        super().__init__(f"user {user!r} may not {action}" + (f" on case {case_id}" if case_id else ""))


class StaleVersion(QmsflowError):
    """The caller acted on an older version of the case than the stored one.

    Attributes:
        case_id: the case.
        expected: the version the caller saw.
        actual: the stored version.
    """

    def __init__(self, case_id: int, expected: int, actual: int) -> None:
        self.case_id = case_id
        self.expected = expected
        self.actual = actual
        super().__init__(f"case {case_id} is at version {actual}, not {expected}: reload it")


class FormStale(StaleVersion):
    """A form was loaded before the case moved on, or before someone recorded one of its fields.

    Attributes:
        case_id: the case.
        expected: the version the form was loaded at.
        actual: the stored version.
        changes: what happened since, oldest first (``staleness.Change``), for the page to say.
    """

    def __init__(self, case_id: int, expected: int, actual: int, changes: Sequence[object]) -> None:
        super().__init__(case_id, expected, actual)
        self.changes = list(changes)


class InvalidTransition(QmsflowError):
    """The event does not exist or cannot fire from the case's current state.

    Attributes:
        case_id: the case.
        state: the case's current state.
        event: the event asked for.
    """

    def __init__(self, case_id: int, state: str, event: str) -> None:
        self.case_id = case_id
        self.state = state
        self.event = event
        super().__init__(f"event {event!r} cannot fire on case {case_id} in state {state!r}")


@dataclass
class FieldProblem:
    """One problem with one submitted field.

    Attributes:
        field: the field's name ("guard" for an event's condition).
        message: what is wrong, in plain English (logs, the CLI, the JSON API).
        code: what is wrong as a stable word a page translates ("required", "date_in_future", ...),
            with ``params`` the values its sentence needs; "" where no page needs one yet.
    """

    field: str
    message: str
    code: str = ""
    params: dict[str, object] = dataclass_field(default_factory=dict)


class GuardFailed(QmsflowError):
    """The event exists and may fire from this state, but its data or conditions do not hold.

    Attributes:
        case_id: the case.
        event: the event asked for.
        problems: each failing field or condition.
    """

    def __init__(self, case_id: int | None, event: str, problems: list[FieldProblem]) -> None:
        self.case_id = case_id
        self.event = event
        self.problems = problems
        detail = "; ".join(f"{p.field}: {p.message}" for p in problems)
        super().__init__(f"event {event!r} refused: {detail}")


class ValidationFailed(QmsflowError):
    """Input to a service (not an event) is malformed.

    Attributes:
        problems: each failing field.
    """

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))


class Conflict(QmsflowError):
    """The request conflicts with stored data (a duplicate code in the same period, a second open case).

    Attributes:
        message: what conflicts, in plain words.
        details: the ids involved (e.g. ``case_id`` of the case already open).
    """

    def __init__(self, message: str, details: dict[str, object] | None = None) -> None:
        self.message = message
        self.details = dict(details or {})
        # both in args, so the error survives pickling (a worker process, a log handler) whole
        super().__init__(message, self.details)

    def __str__(self) -> str:
        return self.message


class DatabaseBusy(QmsflowError):
    """The database could not take the work now (a lock held past the busy timeout, a deadlock, a
    serialization failure); nothing was changed and the same request may simply be tried again.

    Attributes:
        backend: "sqlite" or "postgresql".
        detail: the driver's message, for the log.
    """

    retryable = True

    def __init__(self, backend: str, detail: str) -> None:
        self.backend = backend
        self.detail = detail
        super().__init__(f"the {backend} database is busy ({detail}): nothing was changed, try again in a moment")


class DatabaseUnavailable(QmsflowError):
    """qmsflow cannot connect to or open the database (server down, wrong address, no such database).

    Attributes:
        url: the database URL, with any password hidden.
        detail: the driver's message.
    """

    retryable = False

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        self.detail = detail
        super().__init__(
            f"cannot use the database {url}: {detail}; check that the server runs and that "
            "QMSFLOW_DATABASE_URL names an existing database"
        )


class TooManyAttempts(QmsflowError):
    """Sign-in refused without checking the password: too many recent failures (qmsflow/engine/signin.py).

    Attributes:
        by: what was throttled: "username" or "address".
        until: the instant (UTC) from which sign-in may be tried again.
    """

    def __init__(self, by: str, until: datetime) -> None:
        self.by = by
        self.until = until
        super().__init__(f"too many failed sign-ins for this {by}: try again after {until.isoformat()}")


__all__ = [
    "ConditionError",
    "ConfigurationError",
    "Conflict",
    "DatabaseBusy",
    "DatabaseUnavailable",
    "DefinitionError",
    "DefinitionProblem",
    "FieldProblem",
    "FormStale",
    "GuardFailed",
    "InvalidTransition",
    "NotFound",
    "NotPermitted",
    "QmsflowError",
    "StaleVersion",
    "TooManyAttempts",
    "ValidationFailed",
]
