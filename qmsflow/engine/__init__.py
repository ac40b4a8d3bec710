"""The qmsflow engine: definitions, one shared machine each, cases, history, timers, calendar.

No Flask here and no APScheduler (only ``engine.scheduling`` may wrap it). A case can be run through
its whole life from a Python shell with a session, a Runtime and an Actor.
"""

from .calendar import CalendarOverrides, LengthUnit, WorkingCalendar, add_months, deadline_instant
from .cases import Advanced, advance, get_case, list_cases, open_case, open_obligations, pending_timers
from .clock import LOCAL_TZ, Clock, FixedClock, SystemClock, local_date
from .db import Database, make_engine
from .definitions import Definition, Role, Target, load_definition, load_directory, parse_definition
from .errors import (
    ConditionError,
    ConfigurationError,
    Conflict,
    DatabaseBusy,
    DatabaseUnavailable,
    DefinitionError,
    DefinitionProblem,
    FieldProblem,
    GuardFailed,
    InvalidTransition,
    NotFound,
    NotPermitted,
    QmsflowError,
    StaleVersion,
    ValidationFailed,
)
from .history import AuditFinding, verify_all
from .permissions import SYSTEM, Actor, Decision, decide, visible_unit_ids
from .registry import Registry
from .runtime import Runtime

__all__ = [
    "LOCAL_TZ",
    "SYSTEM",
    "Actor",
    "Advanced",
    "AuditFinding",
    "CalendarOverrides",
    "Clock",
    "ConditionError",
    "ConfigurationError",
    "Conflict",
    "Database",
    "DatabaseBusy",
    "DatabaseUnavailable",
    "Decision",
    "Definition",
    "DefinitionError",
    "DefinitionProblem",
    "FieldProblem",
    "FixedClock",
    "GuardFailed",
    "InvalidTransition",
    "LengthUnit",
    "NotFound",
    "NotPermitted",
    "QmsflowError",
    "Registry",
    "Role",
    "Runtime",
    "StaleVersion",
    "SystemClock",
    "Target",
    "ValidationFailed",
    "WorkingCalendar",
    "add_months",
    "advance",
    "deadline_instant",
    "decide",
    "get_case",
    "list_cases",
    "load_definition",
    "load_directory",
    "local_date",
    "make_engine",
    "open_case",
    "open_obligations",
    "parse_definition",
    "pending_timers",
    "verify_all",
    "visible_unit_ids",
]
