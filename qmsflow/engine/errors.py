"""The engine's typed errors: one root, a subclass per way a request can fail.

The web layer maps these to HTTP status codes in one place; the engine never raises HTTP errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as _field
from datetime import datetime
from typing import Any


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
    """One problem with one submitted field, as a code and parameters, never a sentence.

    Attributes:
        field: the field (or option, or "guard") the problem is about.
        code: what is wrong, a key of ``language.PROBLEMS`` (``required``, ``max_length``, ...).
        params: what the sentence needs (``{"n": 8}``); a value may be a text in both languages.
    """

    field: str
    code: str
    params: dict[str, Any] = _field(default_factory=dict)

    @property
    def message(self) -> str:
        """The problem in English (logs, ``str`` of an error); a reader's language: ``render``."""
        return self.render("en")

    def render(self, language: str) -> str:
        """The problem as a sentence in ``language`` (``vi`` or ``en``)."""
        from .language import problem_text

        return problem_text(self, language)


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


class ImportRefused(ValidationFailed):
    """An import of units or users has bad rows; nothing of it was kept (engine/unitimport.py).

    Attributes:
        problems: each bad row as a field problem whose field is ``sheet:row:column``.
        rows: the same, as ``unitimport.RowProblem`` (sheet, row number, column, problem).
    """

    def __init__(self, problems: list[FieldProblem], rows: Sequence[Any]) -> None:
        self.rows = list(rows)
        super().__init__(problems)


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


# What each period constraint of migration 0007 keeps apart, in plain words.
PERIOD_CONSTRAINTS = {
    "ex_unit_versions_code": "the official code is held by another unit in an overlapping period",
    "ex_unit_versions_unit": "the unit already has a version in an overlapping period",
    "ex_unit_versions_lead": "another unit is the lead unit in an overlapping period",
    "ex_unit_parents_unit": "the unit already has a parent in an overlapping period",
    "ck_unit_parents_period": "a parent link must end after it starts",
}


class PeriodOverlap(Conflict):
    """The database refused a dated row whose period overlaps another it must be kept apart from.

    Raised by ``Database`` for a PostgreSQL exclusion violation or a SQLite period trigger alike.

    Attributes:
        constraint: the constraint's name (a key of ``PERIOD_CONSTRAINTS``).
    """

    def __init__(self, constraint: str) -> None:
        self.constraint = constraint
        super().__init__(PERIOD_CONSTRAINTS.get(constraint, f"refused by {constraint}"), {"constraint": constraint})

    def __reduce__(self) -> tuple[type[PeriodOverlap], tuple[str]]:
        return (PeriodOverlap, (self.constraint,))


class CalendarMismatch(QmsflowError):
    """This process's working calendar is not the stored one, so it may not plan or fire deadlines.

    Planning on another calendar than the one the stored timers were planned on would move
    deadlines back and forth between processes; applying a calendar is an explicit act
    (``qmsflow calendar replan``, docs/operations.md "Changing the calendar").

    Attributes:
        process: fingerprint of this process's calendar (its overrides and ``holidays`` version).
        stored: fingerprint of the stored calendar, or None when none is stored yet.
        process_holidays: this process's ``holidays`` package version.
        stored_holidays: the version the stored calendar was applied with ("" when unknown).
        replanning: the fingerprint a replan now under way applies, or None.
    """

    def __init__(
        self, process: str, stored: str | None, process_holidays: str, stored_holidays: str, replanning: str | None = None
    ) -> None:
        self.process = process
        self.stored = stored
        self.process_holidays = process_holidays
        self.stored_holidays = stored_holidays
        self.replanning = replanning
        super().__init__(process, stored, process_holidays, stored_holidays, replanning)

    def __str__(self) -> str:
        if self.stored is None:
            return "no working calendar is stored in the database: run `qmsflow init` to store it"
        if self.replanning is not None:
            return (
                f"the working calendar is being re-planned (to {self.replanning}): deadlines are planned and fired "
                "again once `qmsflow calendar replan` has finished (run it again if it was stopped)"
            )
        if self.process_holidays != self.stored_holidays:
            why = f"holidays package {self.process_holidays}, the stored calendar was applied with {self.stored_holidays}"
            fix = "re-plan the stored days on this holidays version with `qmsflow calendar replan`"
        else:
            why = "its calendar file's days differ from the stored days"
            fix = "apply the file with `qmsflow calendar replan --from-file` (the stored days are the source otherwise)"
        return (
            f"this process's working calendar ({self.process}) is not the stored one ({self.stored}): {why}; "
            f"{fix}, or restart this process with the stored calendar"
        )


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



class InvalidToken(QmsflowError):
    """An API bearer token that is unknown, revoked, expired or whose user is deactivated.

    The four are reported alike (one reason, ``why``, for the log only), so a caller learns nothing
    about tokens it does not hold.

    Attributes:
        why: "unknown", "revoked", "expired" or "inactive_user".
    """

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"the bearer token is not valid ({why})")


class RateLimited(QmsflowError):
    """A token made more requests in the current minute than the rate limit allows.

    Attributes:
        limit: requests allowed per minute.
        retry_after: seconds until the next minute begins.
    """

    def __init__(self, limit: int, retry_after: int) -> None:
        self.limit = limit
        self.retry_after = retry_after
        super().__init__(f"more than {limit} requests in a minute: try again in {retry_after} s")


class IdempotencyInFlight(QmsflowError):
    """A request with this Idempotency-Key is still being answered; retry once it has been.

    Attributes:
        key: the Idempotency-Key.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"a request with Idempotency-Key {key!r} is still running: retry in a moment")

__all__ = [
    "CalendarMismatch",
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
    "IdempotencyInFlight",
    "InvalidToken",
    "InvalidTransition",
    "NotFound",
    "NotPermitted",
    "PERIOD_CONSTRAINTS",
    "PeriodOverlap",
    "QmsflowError",
    "RateLimited",
    "StaleVersion",
    "TooManyAttempts",
    "ValidationFailed",
]
